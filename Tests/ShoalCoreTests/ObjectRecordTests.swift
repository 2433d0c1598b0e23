import Testing

@testable import ShoalCore

/// The `objects` table's record layout: byte-exact, round trips, and total on bad bytes.
@Suite("Object records")
struct ObjectRecordTests {
    static let object = StoredObject(
        key: 0x0102_0304_0506_0708, version: ObjectVersion(stamp: 1_000_000_007, writer: PeerID(raw: 3)),
        value: ObjectValue(bytes: 4096, content: 0xdead_beef, checksum: 0x1234_5678_9abc_def0))

    @Test func layoutIsSixLittleEndianWordsUnderABigEndianKey() {
        #expect(ObjectRecord.key(0x0102_0304_0506_0708) == [1, 2, 3, 4, 5, 6, 7, 8])
        #expect(ObjectRecord.objectKey([1, 2, 3, 4, 5, 6, 7, 8]) == 0x0102_0304_0506_0708)
        let bytes = ObjectRecord.encode(Self.object)
        #expect(bytes.count == ObjectRecord.byteCount)
        #expect(Array(bytes[0..<8]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(bytes[16..<24]) == [3, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(bytes[24..<32]) == [0, 0x10, 0, 0, 0, 0, 0, 0])
    }

    @Test func roundTrips() {
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<200 {
            let object = StoredObject(
                key: rng.next(), version: ObjectVersion(stamp: rng.next(), writer: PeerID(raw: rng.next())),
                value: ObjectValue(bytes: rng.next(), content: rng.next(), checksum: rng.next()))
            #expect(ObjectRecord.decode(ObjectRecord.encode(object)) == object)
            let entry = ShardEntry(key: ObjectRecord.key(object.key), value: ObjectRecord.encode(object))
            #expect(ObjectRecord.decode(entry) == object)
        }
        // Big-endian keys sort as the numbers do.
        let keys: [UInt64] = [0, 1, 255, 256, 1 << 32, UInt64.max]
        #expect(keys.map(ObjectRecord.key).sorted { $0.lexicographicallyPrecedes($1) } == keys.map(ObjectRecord.key))
    }

    @Test func malformedBytesDecodeToNilNeverTrap() {
        let good = ObjectRecord.encode(Self.object)
        #expect(ObjectRecord.decode([]) == nil)
        for length in [1, 8, 47, 49, 96] {
            #expect(ObjectRecord.decode([UInt8](repeating: 0xff, count: length)) == nil, "\(length) bytes")
        }
        // Every truncation and every extension of a valid record is refused.
        for cut in 0..<good.count { #expect(ObjectRecord.decode(Array(good.prefix(cut))) == nil) }
        #expect(ObjectRecord.decode(good + [0]) == nil)
        // Random bytes of every length up to 64: nil unless exactly 48, and never a trap.
        var rng = SeededGenerator(seed: 4)
        for length in 0...64 {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            #expect((ObjectRecord.decode(bytes) != nil) == (length == 48))
        }
        // An entry whose key is not 8 bytes, or names another object than its record.
        #expect(ObjectRecord.objectKey([1, 2, 3]) == nil)
        #expect(ObjectRecord.decode(ShardEntry(key: [1, 2, 3], value: good)) == nil)
        #expect(ObjectRecord.decode(ShardEntry(key: ObjectRecord.key(Self.object.key &+ 1), value: good)) == nil)
        #expect(
            ObjectRecord.decode(ShardEntry(key: ObjectRecord.key(Self.object.key), value: Array(good.dropLast())))
                == nil)
    }
}
