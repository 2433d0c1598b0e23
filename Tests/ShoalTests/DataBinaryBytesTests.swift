import Foundation
import ShoalCore
import Testing

@testable import Shoal

private struct Blob: Codable, Equatable {
    var name: String
    var payload: Data
    var spare: Data?
    var parts: [Data]
}

/// `Data` through its own `Codable` conformance, past the fast path: one `UInt8` a call.
private struct PerByte: Codable, Equatable {
    var data: Data
    init(_ data: Data) { self.data = data }
    func encode(to encoder: any Encoder) throws { try data.encode(to: encoder) }
    init(from decoder: any Decoder) throws { data = try Data(from: decoder) }
}

private struct PerByteBlob: Codable, Equatable {
    var name: String
    var payload: PerByte
    var spare: PerByte?
    var parts: [PerByte]
    init(_ b: Blob) {
        name = b.name
        payload = PerByte(b.payload)
        spare = b.spare.map(PerByte.init)
        parts = b.parts.map(PerByte.init)
    }
}

private func randomData(_ count: Int, seed: UInt64) -> Data {
    var rng = SeededGenerator(seed: seed)
    return Data((0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
}

/// `Data` takes the bytes fast path (`BinaryBytes`, conformed in the Shoal module): the same
/// bytes its `Codable` form writes one `UInt8` at a time, copied at once.
@Suite("BinaryCodec: Data")
struct DataBinaryBytesTests {
    @Test func dataIsWrittenAsItsOwnCodableFormWouldBe() throws {
        // An unkeyed container of 2 one-byte elements: byteCount 4, count 2, no nils, the bytes.
        #expect(try BinaryEncoder().encode(Data([0xaa, 0xbb])) == [1, 0, 1, 4, 2, 0, 0xaa, 0xbb])
        #expect(try BinaryEncoder().encode(Data()) == [1, 0, 1, 2, 0, 0])
        // Sizes around the varint boundaries of the count and the byte count.
        for count in [0, 1, 125, 126, 127, 128, 16_380, 16_381, 16_383, 16_384, 100_000] {
            let data = randomData(count, seed: UInt64(count))
            #expect(try BinaryEncoder().encode(data) == BinaryEncoder().encode(PerByte(data)), "\(count) bytes")
        }
        let blob = Blob(
            name: "b", payload: randomData(5_000, seed: 7), spare: Data([0]),
            parts: [Data(), randomData(3, seed: 8), randomData(300, seed: 9)])
        #expect(try BinaryEncoder().encode(blob) == BinaryEncoder().encode(PerByteBlob(blob)))
        // A Data that is a slice with a non-zero start index.
        let slice = randomData(1_000, seed: 3)[100..<900]
        #expect(try BinaryEncoder().encode(slice) == BinaryEncoder().encode(PerByte(Data(slice))))
    }

    @Test func dataRoundTripsAloneAndInsideValues() throws {
        for count in [0, 1, 127, 128, 16_384, 1 << 20] {
            let data = randomData(count, seed: UInt64(count))
            #expect(try BinaryDecoder().decode(Data.self, from: BinaryEncoder().encode(data)) == data)
        }
        var blob = Blob(
            name: "b", payload: randomData(5_000, seed: 7), spare: nil,
            parts: [Data(), randomData(3, seed: 8), randomData(300, seed: 9)])
        #expect(try BinaryDecoder().decode(Blob.self, from: BinaryEncoder().encode(blob)) == blob)
        blob.spare = Data([0])
        #expect(try BinaryDecoder().decode(Blob.self, from: BinaryEncoder().encode(blob)) == blob)
        let map = ["x": Data([1, 2]), "y": Data()]
        #expect(try BinaryDecoder().decode([String: Data].self, from: BinaryEncoder().encode(map)) == map)
    }

    /// The fast path accepts exactly what the per-byte path accepts, and reads the same value:
    /// checked on every truncation and many corruptions of valid messages.
    @Test func decodingAgreesWithThePerBytePathOnAnyInput() throws {
        let blob = Blob(name: "n", payload: randomData(40, seed: 4), spare: Data([1]), parts: [Data([2, 3]), Data()])
        let valid = try BinaryEncoder().encode(blob)
        var inputs: [[UInt8]] = (0...valid.count).map { Array(valid.prefix($0)) }
        var rng = SeededGenerator(seed: 11)
        for _ in 0..<3_000 {
            var bytes = valid
            for _ in 0..<Int(1 + rng.next() % 3) {
                bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(
                    truncatingIfNeeded: rng.next() % 8 == 0 ? rng.next() : rng.next() % 4)
            }
            inputs.append(bytes)
        }
        // Hand-made: a nil element, a count past the end, bytes after the elements in the container.
        inputs += [[1, 0, 1, 3, 1, 1, 0], [1, 0, 1, 4, 5, 0, 1, 2], [1, 0, 1, 5, 2, 0, 7, 8, 9]]
        var agreedOnValues = 0
        for bytes in inputs {
            let fast = Result { try BinaryDecoder().decode(Blob.self, from: bytes) }
            let slow = Result { try BinaryDecoder().decode(PerByteBlob.self, from: bytes) }
            switch (fast, slow) {
            case (.success(let f), .success(let s)):
                #expect(PerByteBlob(f) == s, "\(bytes)")
                agreedOnValues += 1
            case (.failure, .failure): break
            default: Issue.record("fast \(fast), per-byte \(slow) on \(bytes)")
            }
            let top = (
                Result { try BinaryDecoder().decode(Data.self, from: bytes) },
                Result { try BinaryDecoder().decode(PerByte.self, from: bytes) }
            )
            switch top {
            case (.success(let f), .success(let s)): #expect(f == s.data, "\(bytes)")
            case (.failure, .failure): break
            default: Issue.record("top level: fast \(top.0), per-byte \(top.1) on \(bytes)")
            }
        }
        #expect(agreedOnValues > 100)
        #expect(try BinaryDecoder().decode(Data.self, from: [1, 0, 1, 5, 2, 0, 7, 8, 9]) == Data([7, 8]))
        let strict = BinaryDecoder(limits: BinaryDecodingLimits(maxElementCount: 3))
        #expect(throws: BinaryDecodingError.self) {
            try strict.decode(Data.self, from: [1, 0, 1, 6, 4, 0, 1, 2, 3, 4])
        }
        #expect(try strict.decode(Data.self, from: [1, 0, 1, 5, 3, 0, 1, 2, 3]) == Data([1, 2, 3]))
    }

    @Test func dataPersistsAndOpens() throws {
        let shard = MemoryShard()
        let blob = Blob(name: "p", payload: Data([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5]), spare: nil, parts: [])
        try PersistentObjects.store(blob, as: "blob", in: shard)
        #expect(try PersistentObjects.load("blob", as: Blob.self, from: shard) == blob)
        let stored = try #require(try shard.get(Array("blob".utf8), in: .values))
        let text = try BinaryStructure.describe(stored)
        #expect(text.contains("payload: [9 elements"), "\(text)")
        #expect(text.contains("[0] de (222 or Int8 -34)"), "\(text)")
    }
}
