import Foundation
import ShoalCore
import ShoalStore
import ShoalTestSupport
import Testing

@testable import Shoal

private struct Reading: Codable, Sendable, Equatable {
    var sensor: String
    var at: Int
    var values: [Double]
    var note: String?
    var flags: [Bool]
    var children: [Reading]
}

private let reading = Reading(
    sensor: "t-1", at: 1_700_000_000, values: [20.5, 21.25], note: nil, flags: [true, false],
    children: [Reading(sensor: "t-1a", at: 7, values: [], note: "inner", flags: [], children: [])])

/// Persistent objects in the binary value encoding, objects written as JSON by earlier builds,
/// and the structural view `shoal kv get` prints.
@Suite("Persistence: the binary codec")
struct BinaryPersistenceTests {
    @Test func newObjectsPersistInTheBinaryEncoding() throws {
        let shard = MemoryShard()
        let info = try PersistentObjects.store(reading, as: "r", in: shard, writer: "w")
        #expect(info.codec == PersistentObjectInfo.binaryCodec)
        let stored = try #require(try shard.get(Array("r".utf8), in: .values))
        #expect(stored == (try BinaryEncoder().encode(reading)))
        #expect(info.bytes == stored.count)
        #expect(try PersistentObjects.load("r", as: Reading.self, from: shard) == reading)
        // The info record stays JSON, for people.
        let meta = try #require(try shard.get(Array("r".utf8), in: .versions))
        #expect(try JSONDecoder().decode(PersistentObjectInfo.self, from: Data(meta)) == info)
    }

    /// What a build before the binary codec wrote: sorted-keys JSON and `codec: "json"`.
    @Test func objectsWrittenAsJSONByEarlierBuildsStillLoad() throws {
        let shard = MemoryShard()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = Array(try encoder.encode(reading))
        let old = PersistentObjectInfo(
            version: 4, type: String(reflecting: Reading.self), bytes: json.count, codec: "json", writer: nil)
        var batch = WriteBatch()
        batch.put(Array("old".utf8), json, in: .values)
        batch.put(Array("old".utf8), Array(try encoder.encode(old)), in: .versions)
        try shard.apply(batch)
        #expect(try PersistentObjects.load("old", as: Reading.self, from: shard) == reading)

        // Overwriting it writes the binary form and counts the version on.
        let next = try PersistentObjects.store(reading, as: "old", in: shard)
        #expect(next.version == 5)
        #expect(next.codec == "binary")
        #expect(try PersistentObjects.load("old", as: Reading.self, from: shard) == reading)

        // A value without info (put with `shoal kv put`) is read as JSON, as before.
        try shard.put(Array("typed-by-hand".utf8), Array("[1.5, 2]".utf8), in: .values)
        #expect(try PersistentObjects.load("typed-by-hand", as: [Double].self, from: shard) == [1.5, 2])
    }

    @Test func anUnknownCodecIsAClearError() throws {
        let shard = MemoryShard()
        let info = PersistentObjectInfo(version: 1, type: "X", bytes: 1, codec: "msgpack", writer: nil)
        var batch = WriteBatch()
        batch.put(Array("m".utf8), [0x90], in: .values)
        batch.put(Array("m".utf8), Array(try JSONEncoder().encode(info)), in: .versions)
        try shard.apply(batch)
        #expect(throws: PersistentObjectError.self) { try PersistentObjects.load("m", as: [Int].self, from: shard) }
        do {
            _ = try PersistentObjects.load("m", as: [Int].self, from: shard)
        } catch {
            #expect("\(error)".contains("'msgpack', which this build cannot read"), "\(error)")
        }
    }

    @Test func damagedBinaryBytesAreATypeMismatchNotATrap() throws {
        let shard = MemoryShard()
        try PersistentObjects.store(reading, as: "r", in: shard)
        let good = try #require(try shard.get(Array("r".utf8), in: .values))
        // Rewrite the value (with a valid shard checksum) as every truncation of itself.
        for cut in stride(from: 0, to: good.count, by: 3) {
            try shard.put(Array("r".utf8), Array(good.prefix(cut)), in: .values)
            #expect(throws: ShoalError.self) { try PersistentObjects.load("r", as: Reading.self, from: shard) }
        }
    }

    // MARK: - The structural view

    @Test func structureShowsNamesStringsNumbersListsAndNils() throws {
        let text = try BinaryStructure.describe(try BinaryEncoder().encode(reading))
        let expected = [
            "binary encoding version 1, ",
            "key names: \"sensor\", \"at\", \"values\", \"flags\", \"children\", \"note\"",
            "{",
            "  sensor: \"t-1\"",
            "  at: 00 f1 53 65 00 00 00 00 (Int64 1700000000 or Double",
            "  values: 2 × 8-byte scalars: as Double [20.5, 21.25] or as Int64",
            "  flags: [2 elements",
            "    [0] 01 (1 or true)",
            "    [1] 00 (0 or false or an empty string, array or struct)",
            "  children: [1 element",
            "    [0] {",
            "      sensor: \"t-1a\"",
            "      note: \"inner\"",
        ]
        for piece in expected { #expect(text.contains(piece), "missing \(piece) in:\n\(text)") }
        // A nil field written with encodeIfPresent has no entry; an explicit nil shows as nil.
        // (A struct of nothing but explicit nils reads as a list: `{a: nil}` and `[]` are the
        // same three bytes.)
        struct Explicit: Encodable {
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encodeNil(forKey: .a)
                try c.encode(Int16(-2), forKey: .b)
            }
            enum CodingKeys: CodingKey { case a, b }
        }
        let explicit = try BinaryStructure.describe(try BinaryEncoder().encode(Explicit()))
        #expect(explicit.contains("  a: nil\n  b: fe ff (Int16 -2 or UInt16 65534)\n"), "\(explicit)")
        #expect(try BinaryStructure.describe(try BinaryEncoder().encode(Int?.none)).hasSuffix("nil\n"))
        let optionals: [Int?] = [1, nil, 3]
        let list = try BinaryStructure.describe(try BinaryEncoder().encode(optionals))
        #expect(list.contains("[3 elements, 1 nil"), "\(list)")
        #expect(list.contains("[1] nil"), "\(list)")
        #expect(list.contains("[2] 03 00 00 00 00 00 00 00 (Int64 3"), "\(list)")
        let strings = try BinaryStructure.describe(try BinaryEncoder().encode(["a\"b", "line\nbreak"]))
        #expect(strings.contains(#"[0] "a\"b""#), "\(strings)")
        #expect(strings.contains(#"[1] "line\nbreak""#), "\(strings)")
    }

    @Test func longContainersAndArraysAreSummarised() throws {
        let many = try BinaryStructure.describe(try BinaryEncoder().encode((0..<100).map { "item \($0)" }))
        #expect(many.contains("[100 elements"), "\(many)")
        #expect(many.contains("… 90 more"), "\(many)")
        let big = try BinaryStructure.describe(try BinaryEncoder().encode([Double](repeating: 0.25, count: 1_000_000)))
        #expect(big.contains("1000000 × 8-byte scalars: as Double [0.25, 0.25, 0.25, 0.25, 0.25, 0.25, …]"), "\(big)")
        #expect(big.utf8.count < 1_000)
        let lines = try BinaryStructure.describe(try BinaryEncoder().encode(reading), maxLines: 3)
        #expect(lines.split(separator: "\n").count == 4, "\(lines)")
        #expect(lines.hasSuffix("… (stopped after 3 lines)\n"), "\(lines)")
    }

    /// Bytes from the store are untrusted: the view throws `Malformed` for a bad header and
    /// otherwise shows what it cannot read as bytes; it never traps and its output is bounded.
    @Test func structureIsTotalOnMalformedBytes() throws {
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([]) }
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([2, 0, 1, 0]) }
        // 5 keys, no bytes:
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([1, 5, 1]) }
        // Key not UTF-8:
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([1, 1, 1, 0xff, 1, 0]) }
        // No presence byte:
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([1, 0]) }
        // Present, no value:
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([1, 0, 1]) }
        #expect(throws: BinaryStructure.Malformed.self) { try BinaryStructure.describe([1, 0, 2, 0]) }
        #expect(throws: BinaryStructure.Malformed.self) {
            try BinaryStructure.describe([1] + [UInt8](repeating: 0xff, count: 12))
        }

        let encodings = [
            try BinaryEncoder().encode(reading), try BinaryEncoder().encode([[1.0, 2.0], [3.0]]),
            try BinaryEncoder().encode(["k": [1, 2], "j": []]),
            try BinaryEncoder().encode([Int8?](repeating: nil, count: 5)),
        ]
        for bytes in encodings {
            for cut in 0...bytes.count { _ = try? BinaryStructure.describe(Array(bytes.prefix(cut))) }
            for i in bytes.indices {
                var flipped = bytes
                flipped[i] ^= 0x5a
                _ = try? BinaryStructure.describe(flipped)
            }
        }
        var rng = SeededGenerator(seed: 99)
        for _ in 0..<2_000 {
            let count = Int(rng.next() % 64)
            let bytes =
                [1]
                + (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next() % 8 == 0 ? rng.next() : rng.next() % 4) }
            _ = try? BinaryStructure.describe(bytes)
        }
        // Ten thousand nested length prefixes (a keyed entry inside a keyed entry …): bounded depth.
        var nested: [UInt8] = [0x01]
        for _ in 0..<10_000 { nested = [0x00] + varint(UInt64(nested.count)) + nested }
        let deep = try BinaryStructure.describe([1, 1, 1, 0x6b, 1] + varint(UInt64(nested.count)) + nested)
        #expect(deep.split(separator: "\n").count < 200, "\(deep.prefix(500))")
    }

    /// The same object through the real binary: `kv get` shows the structure, `--raw` the bytes,
    /// and a JSON object from an earlier build prints as the JSON it is.
    @Test func kvGetShowsBinaryObjectsAndJSONObjects() throws {
        let dir = try ScratchDirectory("kv-binary")
        defer { dir.remove() }
        let data = dir.appending("data").path
        do {
            let shard = try LMDBShard(directory: data)
            try PersistentObjects.store(reading, as: "r", in: shard, writer: "probe")
            let json = Array(#"{"a":1}"#.utf8)
            let info = PersistentObjectInfo(version: 1, type: "T", bytes: json.count, codec: "json", writer: nil)
            var batch = WriteBatch()
            batch.put(Array("j".utf8), json, in: .values)
            batch.put(Array("j".utf8), Array(try JSONEncoder().encode(info)), in: .versions)
            // Recorded as binary, but not a binary value.
            let bad = PersistentObjectInfo(version: 1, type: "T", bytes: 3, codec: "binary", writer: nil)
            batch.put(Array("bad".utf8), Array("abc".utf8), in: .values)
            batch.put(Array("bad".utf8), Array(try JSONEncoder().encode(bad)), in: .versions)
            // A value beside something in `versions` that is not an info record: shown as stored.
            batch.put(Array("plain".utf8), [0x01, 0x02], in: .values)
            batch.put(Array("plain".utf8), Array("not info".utf8), in: .versions)
            try shard.apply(batch)
        }
        let shown = try ChildProcess.shoal(["kv", "get", "r", "--data-dir", data])
        #expect(shown.status == 0, "stderr: \(shown.stderr)")
        #expect(shown.stdout.hasPrefix("# 'r': persistent object version 1 of type "), "\(shown.stdout)")
        #expect(shown.stdout.contains("written by 'probe'"), "\(shown.stdout)")
        #expect(shown.stdout.contains("  sensor: \"t-1\"\n"), "\(shown.stdout)")

        let file = dir.appending("shown.txt").path
        let toFile = try ChildProcess.shoal(["kv", "get", "r", "--output", file, "--data-dir", data])
        #expect(toFile.status == 0, "stderr: \(toFile.stderr)")
        #expect(try String(contentsOfFile: file, encoding: .utf8) == shown.stdout)

        let json = try ChildProcess.shoal(["kv", "get", "j", "--data-dir", data])
        #expect(json.status == 0, "stderr: \(json.stderr)")
        #expect(json.stdout == #"{"a":1}"#)

        let bad = try ChildProcess.shoal(["kv", "get", "bad", "--data-dir", data])
        #expect(bad.status == 1)
        #expect(bad.stdout.isEmpty)
        #expect(
            bad.stderr.contains(
                "error: 'bad' is recorded as a binary persistent object, but its value is not a binary value"),
            "stderr: \(bad.stderr)")
        let plainFile = dir.appending("plain.bin").path
        let plain = try ChildProcess.shoal(["kv", "get", "plain", "--output", plainFile, "--data-dir", data])
        #expect(plain.status == 0, "stderr: \(plain.stderr)")
        #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: plainFile))) == [0x01, 0x02])

        let badRaw = try ChildProcess.shoal(["kv", "get", "bad", "--raw", "--data-dir", data])
        #expect(badRaw.status == 0)
        #expect(badRaw.stdout == "abc")
    }
}

private func varint(_ value: UInt64) -> [UInt8] {
    var v = value
    var out: [UInt8] = []
    while v >= 0x80 {
        out.append(UInt8(truncatingIfNeeded: v) | 0x80)
        v >>= 7
    }
    out.append(UInt8(v))
    return out
}
