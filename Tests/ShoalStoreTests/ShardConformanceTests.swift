import Foundation
import ShoalCore
import ShoalStore
import Testing

/// The `KeyValueShard` contract, written once and run against every implementation.
@Suite struct ShardConformanceTests {
    @Test(arguments: ShardKind.allCases)
    func putGetOverwriteDelete(kind: ShardKind) throws {
        try withShard(kind) { f in
            let shard = f.shard
            #expect(try shard.get(bytes("a"), in: .values) == nil)
            try shard.put(bytes("a"), bytes("one"), in: .values)
            #expect(try shard.get(bytes("a"), in: .values) == bytes("one"))
            try shard.put(bytes("a"), bytes("two, longer"), in: .values)
            #expect(try shard.get(bytes("a"), in: .values) == bytes("two, longer"))
            try shard.delete(bytes("a"), in: .values)
            #expect(try shard.get(bytes("a"), in: .values) == nil)
            // Deleting a missing key is not an error.
            try shard.delete(bytes("never"), in: .values)
            #expect(try shard.count(.values) == 0)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func tablesAreSeparate(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("k"), bytes("v"), in: .values)
            try f.shard.put(bytes("k"), bytes("w"), in: .workflows)
            #expect(try f.shard.get(bytes("k"), in: .values) == bytes("v"))
            #expect(try f.shard.get(bytes("k"), in: .workflows) == bytes("w"))
            #expect(try f.shard.get(bytes("k"), in: .versions) == nil)
            #expect(try f.shard.count(.values) == 1)
            #expect(try f.shard.count(.versions) == 0)
            #expect(try f.shard.count(.workflows) == 1)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func batchLastWriteWins(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("gone"), bytes("old"), in: .values)
            var batch = WriteBatch()
            batch.put(bytes("x"), bytes("1"), in: .values)
            batch.put(bytes("x"), bytes("2"), in: .values)
            batch.put(bytes("y"), bytes("1"), in: .values)
            batch.delete(bytes("y"), in: .values)
            batch.delete(bytes("z"), in: .values)
            batch.put(bytes("z"), bytes("3"), in: .values)
            batch.delete(bytes("gone"), in: .values)
            batch.put(bytes("x"), bytes("meta"), in: .versions)
            try f.shard.apply(batch)
            #expect(try f.shard.get(bytes("x"), in: .values) == bytes("2"))
            #expect(try f.shard.get(bytes("y"), in: .values) == nil)
            #expect(try f.shard.get(bytes("z"), in: .values) == bytes("3"))
            #expect(try f.shard.get(bytes("gone"), in: .values) == nil)
            #expect(try f.shard.get(bytes("x"), in: .versions) == bytes("meta"))
            #expect(try f.shard.count(.values) == 2)
            #expect(try f.shard.storedBytes() == 1 + 1 + 4)
            // An empty batch changes nothing.
            try f.shard.apply(WriteBatch())
            #expect(try f.shard.count(.values) == 2)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func failedBatchAppliesNothing(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("keep"), bytes("before"), in: .values)
            var batch = WriteBatch()
            batch.put(bytes("keep"), bytes("after"), in: .values)
            batch.put(bytes("new"), bytes("value"), in: .versions)
            batch.delete(bytes("keep"), in: .values)
            batch.put([], bytes("empty key fails the whole batch"), in: .values)
            #expect(throws: ShardError.invalidKey(length: 0, maxLength: 511)) { try f.shard.apply(batch) }
            #expect(try f.shard.get(bytes("keep"), in: .values) == bytes("before"))
            #expect(try f.shard.get(bytes("new"), in: .versions) == nil)
            #expect(try f.shard.count(.values) == 1)
            #expect(try f.shard.storedBytes() == 6)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func scanPrefixAfterLimitInBytewiseOrder(kind: ShardKind) throws {
        try withShard(kind) { f in
            let keys: [[UInt8]] = [
                bytes("a"), bytes("ab"), bytes("abc"), bytes("abd"), bytes("ac"), bytes("b"),
                [0x00], [0x00, 0x00], [0x7f], [0x80], [0xff], [0xff, 0x00], bytes("a\u{0}"),
            ]
            var generator = SeededGenerator(seed: 11)
            var batch = WriteBatch()
            for key in keys.shuffled(using: &generator) { batch.put(key, key + [1], in: .values) }
            try f.shard.apply(batch)
            let sorted = keys.sorted { $0.lexicographicallyPrecedes($1) }

            let all = try f.shard.scan(.values, prefix: [], after: nil, limit: 100)
            #expect(all.map(\.key) == sorted)
            #expect(all.allSatisfy { $0.value == $0.key + [1] })

            let withA = try f.shard.scan(.values, prefix: bytes("a"), after: nil, limit: 100).map(\.key)
            #expect(withA == [bytes("a"), bytes("a\u{0}"), bytes("ab"), bytes("abc"), bytes("abd"), bytes("ac")])
            #expect(
                try f.shard.scan(.values, prefix: bytes("ab"), after: bytes("ab"), limit: 100).map(\.key)
                    == [bytes("abc"), bytes("abd")])
            // `after` need not be a stored key.
            #expect(
                try f.shard.scan(.values, prefix: bytes("a"), after: bytes("abcz"), limit: 100).map(\.key)
                    == [bytes("abd"), bytes("ac")])
            // `after` before the prefix range starts the scan at the prefix.
            #expect(
                try f.shard.scan(.values, prefix: bytes("ab"), after: bytes("a"), limit: 100).map(\.key)
                    == [bytes("ab"), bytes("abc"), bytes("abd")])
            // `after` beyond the prefix range finds nothing.
            #expect(try f.shard.scan(.values, prefix: bytes("ab"), after: bytes("b"), limit: 100).isEmpty)
            #expect(try f.shard.scan(.values, prefix: bytes("zz"), after: nil, limit: 100).isEmpty)
            #expect(
                try f.shard.scan(.values, prefix: [0xff], after: nil, limit: 100).map(\.key) == [[0xff], [0xff, 0x00]])
            #expect(try f.shard.scan(.values, prefix: [], after: nil, limit: 3).map(\.key) == Array(sorted.prefix(3)))
            #expect(try f.shard.scan(.values, prefix: [], after: nil, limit: 0).isEmpty)
            // An `after` longer than any key limit is accepted.
            let longAfter = bytes("a") + [UInt8](repeating: 0xff, count: 600)
            #expect(try f.shard.scan(.values, prefix: [], after: longAfter, limit: 1).map(\.key) == [bytes("b")])

            // Paging with `after` = last key returned visits everything once, in order.
            var paged: [[UInt8]] = []
            var cursor: [UInt8]? = nil
            while true {
                let page = try f.shard.scan(.values, prefix: [], after: cursor, limit: 4)
                if page.isEmpty { break }
                paged += page.map(\.key)
                cursor = page.last!.key
            }
            #expect(paged == sorted)
            // Other tables are not visited.
            #expect(try f.shard.scan(.versions, prefix: [], after: nil, limit: 100).isEmpty)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func bigEndianNumericKeysSortNumerically(kind: ShardKind) throws {
        try withShard(kind) { f in
            var generator = SeededGenerator(seed: 5)
            var numbers: Set<UInt64> = [0, 1, 255, 256, 65_535, 65_536, UInt64(UInt32.max), UInt64.max]
            while numbers.count < 500 { numbers.insert(generator.next() >> (generator.next() % 64)) }
            var batch = WriteBatch()
            for n in numbers.sorted().shuffled(using: &generator) {
                batch.put(bigEndian(n), bigEndian(n), in: .workflows)
            }
            try f.shard.apply(batch)
            let scanned = try f.shard.scan(.workflows, prefix: [], after: nil, limit: 1_000)
            #expect(scanned.map { uint64(bigEndian: $0.key) } == numbers.sorted())
            #expect(try f.shard.count(.workflows) == numbers.count)
            // Resume after a number: everything greater, in order.
            let rest = try f.shard.scan(.workflows, prefix: [], after: bigEndian(65_535), limit: 1_000)
            #expect(rest.map { uint64(bigEndian: $0.key) } == numbers.sorted().filter { $0 > 65_535 })
        }
    }

    @Test(arguments: ShardKind.allCases)
    func countAndStoredBytes(kind: ShardKind) throws {
        try withShard(kind) { f in
            #expect(try f.shard.storedBytes() == 0)
            var expected: [ShardTable: [String: Int]] = [:]
            var generator = SeededGenerator(seed: 3)
            for round in 0..<300 {
                let table = ShardTable.allCases[Int(generator.next() % 3)]
                let key = "k\(generator.next() % 40)"
                if generator.next() % 4 == 0 {
                    try f.shard.delete(bytes(key), in: table)
                    expected[table, default: [:]][key] = nil
                } else {
                    let size = Int(generator.next() % 300)
                    try f.shard.put(bytes(key), [UInt8](repeating: UInt8(round % 256), count: size), in: table)
                    expected[table, default: [:]][key] = size
                }
            }
            for table in ShardTable.allCases {
                #expect(try f.shard.count(table) == expected[table, default: [:]].count)
            }
            let total = expected.values.flatMap(\.values).reduce(0, +)
            #expect(try f.shard.storedBytes() == total)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func emptyValuesAreStoredAndDistinctFromMissing(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("empty"), [], in: .values)
            #expect(try f.shard.get(bytes("empty"), in: .values) == [])
            #expect(try f.shard.get(bytes("missing"), in: .values) == nil)
            #expect(
                try f.shard.scan(.values, prefix: [], after: nil, limit: 10) == [
                    ShardEntry(key: bytes("empty"), value: [])
                ])
            #expect(try f.shard.count(.values) == 1)
            #expect(try f.shard.storedBytes() == 0)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func invalidKeysAreRejected(kind: ShardKind) throws {
        try withShard(kind) { f in
            let longest = [UInt8](repeating: 0x61, count: 511)
            try f.shard.put(longest, bytes("ok"), in: .values)
            #expect(try f.shard.get(longest, in: .values) == bytes("ok"))

            let tooLong = longest + [0x61]
            #expect(throws: ShardError.invalidKey(length: 512, maxLength: 511)) {
                try f.shard.put(tooLong, bytes("no"), in: .values)
            }
            #expect(throws: ShardError.invalidKey(length: 512, maxLength: 511)) {
                try f.shard.get(tooLong, in: .values)
            }
            #expect(throws: ShardError.invalidKey(length: 0, maxLength: 511)) {
                try f.shard.put([], bytes("no"), in: .values)
            }
            #expect(throws: ShardError.invalidKey(length: 0, maxLength: 511)) { try f.shard.get([], in: .values) }
            #expect(throws: ShardError.invalidKey(length: 0, maxLength: 511)) { try f.shard.delete([], in: .values) }
            #expect(try f.shard.count(.values) == 1)
            // A prefix longer than any key matches nothing.
            #expect(try f.shard.scan(.values, prefix: tooLong, after: nil, limit: 10).isEmpty)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func corruptionIsDetectedWithTableAndKey(kind: ShardKind) throws {
        try withShard(kind) { f in
            let key = bytes("victim")
            try f.shard.put(key, bytes("precious bytes"), in: .versions)
            try f.shard.put(bytes("bystander"), bytes("fine"), in: .versions)
            let original = try #require(try f.overwriteRawRecord(key, in: .versions, with: nil))
            #expect(original.count == ShardRecord.headerByteCount + 14)
            #expect(original[0] == ShardRecord.formatV2)
            let value = bytes("precious bytes")
            #expect(Array(original[1..<33]) == value.withUnsafeBytes { ShardRecord.checksum(key: key, value: $0) })
            #expect(Array(original[1..<33]) != Checksum.blake2b(value), "the checksum must cover the key too")

            // One flipped bit in the value.
            var flipped = original
            flipped[flipped.count - 1] ^= 0x01
            try f.overwriteRawRecord(key, in: .versions, with: flipped)
            let mismatch = ShardError.checksumMismatch(table: .versions, key: key)
            #expect(throws: mismatch) { try f.shard.get(key, in: .versions) }
            #expect(throws: mismatch) { try f.shard.scan(.versions, prefix: [], after: nil, limit: 10) }
            #expect(mismatch.description.contains("versions") && mismatch.description.contains("victim"))
            // Entries before it in the scan are still readable; others stay readable.
            #expect(try f.shard.scan(.versions, prefix: [], after: nil, limit: 1).map(\.key) == [bytes("bystander")])
            #expect(try f.shard.get(bytes("bystander"), in: .versions) == bytes("fine"))

            // A flipped bit in the checksum.
            var badSum = original
            badSum[5] ^= 0x80
            try f.overwriteRawRecord(key, in: .versions, with: badSum)
            #expect(throws: mismatch) { try f.shard.get(key, in: .versions) }

            // Unknown format byte and a truncated record.
            var badFormat = original
            badFormat[0] = 0x7e
            try f.overwriteRawRecord(key, in: .versions, with: badFormat)
            #expect(throws: ShardError.malformedRecord(table: .versions, key: key)) {
                try f.shard.get(key, in: .versions)
            }
            try f.overwriteRawRecord(key, in: .versions, with: Array(original.prefix(10)))
            #expect(throws: ShardError.malformedRecord(table: .versions, key: key)) {
                try f.shard.get(key, in: .versions)
            }

            // Restoring the original bytes makes it readable again; rewriting through the API heals it.
            try f.overwriteRawRecord(key, in: .versions, with: original)
            #expect(try f.shard.get(key, in: .versions) == bytes("precious bytes"))
            try f.overwriteRawRecord(key, in: .versions, with: flipped)
            try f.shard.put(key, bytes("rewritten"), in: .versions)
            #expect(try f.shard.get(key, in: .versions) == bytes("rewritten"))
        }
    }

    /// A record that ends up under another key (a flipped bit in a stored key) must not be read
    /// as that key's value: the checksum covers the key.
    @Test(arguments: ShardKind.allCases)
    func recordUnderAnotherKeyIsDetected(kind: ShardKind) throws {
        try withShard(kind) { f in
            let written = bytes("victim")
            let renamed = bytes("victik")
            try f.shard.put(written, bytes("precious bytes"), in: .values)
            try f.shard.put(bytes("zz"), bytes("bystander"), in: .values)
            let record = try #require(try f.overwriteRawRecord(written, in: .values, with: nil))
            try f.overwriteRawRecord(renamed, in: .values, with: record)

            let mismatch = ShardError.checksumMismatch(table: .values, key: renamed)
            #expect(throws: mismatch) { try f.shard.get(renamed, in: .values) }
            #expect(throws: mismatch) { try f.shard.scan(.values, prefix: [], after: nil, limit: 10) }
            #expect(try f.shard.get(written, in: .values) == nil)
            // Moving the boundary between key and value ("victim" + "precious bytes" as "victimp" +
            // "recious bytes") keeps the concatenation but not the length prefix.
            let shifted = Array(record[0..<ShardRecord.headerByteCount]) + bytes("recious bytes")
            try f.overwriteRawRecord(bytes("victimp"), in: .values, with: shifted)
            #expect(throws: ShardError.checksumMismatch(table: .values, key: bytes("victimp"))) {
                try f.shard.get(bytes("victimp"), in: .values)
            }
            // Moving it back restores the entry.
            try f.overwriteRawRecord(renamed, in: .values, with: nil)
            try f.overwriteRawRecord(written, in: .values, with: record)
            #expect(try f.shard.get(written, in: .values) == bytes("precious bytes"))
        }
    }

    /// Records written by earlier builds (format 1: checksum of the value only) are still read and
    /// verified on their value; writing the key again makes it format 2.
    @Test(arguments: ShardKind.allCases)
    func formatOneRecordsAreStillReadAndVerified(kind: ShardKind) throws {
        try withShard(kind) { f in
            let key = bytes("old")
            let value = bytes("written by format 1")
            let v1 = [ShardRecord.formatV1] + Checksum.blake2b(value) + value
            try f.overwriteRawRecord(key, in: .values, with: v1)
            #expect(try f.shard.get(key, in: .values) == value)
            #expect(
                try f.shard.scan(.values, prefix: [], after: nil, limit: 10) == [ShardEntry(key: key, value: value)])

            var flipped = v1
            flipped[flipped.count - 1] ^= 0x20
            try f.overwriteRawRecord(key, in: .values, with: flipped)
            #expect(throws: ShardError.checksumMismatch(table: .values, key: key)) { try f.shard.get(key, in: .values) }

            try f.shard.put(key, value, in: .values)
            let rewritten = try #require(try f.overwriteRawRecord(key, in: .values, with: nil))
            #expect(rewritten[0] == ShardRecord.formatV2)
        }
    }

    /// `scanReportingDamage` returns every entry in order, the damaged ones with their error and
    /// no value, and pages past them; `scan` still throws at the first damaged one.
    @Test(arguments: ShardKind.allCases)
    func scanReportingDamageListsEveryEntry(kind: ShardKind) throws {
        try withShard(kind) { f in
            for name in ["a", "b", "c", "d", "e"] { try f.shard.put(bytes(name), bytes("value \(name)"), in: .values) }
            var flipped = try #require(try f.overwriteRawRecord(bytes("b"), in: .values, with: nil))
            flipped[flipped.count - 1] ^= 0x01
            try f.overwriteRawRecord(bytes("b"), in: .values, with: flipped)
            try f.overwriteRawRecord(bytes("d"), in: .values, with: [0x7e, 1, 2])

            let all = try f.shard.scanReportingDamage(.values, prefix: [], after: nil, limit: 10)
            #expect(
                all == [
                    ScannedEntry(key: bytes("a"), value: .success(bytes("value a"))),
                    ScannedEntry(key: bytes("b"), value: .failure(.checksumMismatch(table: .values, key: bytes("b")))),
                    ScannedEntry(key: bytes("c"), value: .success(bytes("value c"))),
                    ScannedEntry(key: bytes("d"), value: .failure(.malformedRecord(table: .values, key: bytes("d")))),
                    ScannedEntry(key: bytes("e"), value: .success(bytes("value e"))),
                ])
            let page = try f.shard.scanReportingDamage(.values, prefix: [], after: bytes("b"), limit: 2)
            #expect(page.map(\.key) == [bytes("c"), bytes("d")])
            #expect(throws: ShardError.checksumMismatch(table: .values, key: bytes("b"))) {
                try f.shard.scan(.values, prefix: [], after: nil, limit: 10)
            }
            #expect(try f.shard.scan(.values, prefix: [], after: bytes("d"), limit: 10).map(\.key) == [bytes("e")])
        }
    }

    @Test(arguments: ShardKind.allCases)
    func sixtyFourMebibyteValueRoundTrips(kind: ShardKind) throws {
        try withShard(kind) { f in
            let size = 64 << 20
            var value = [UInt8](repeating: 0, count: size)
            var generator = SeededGenerator(seed: 64)
            value.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for i in words.indices { words[i] = generator.next() }
            }
            try f.shard.put(bytes("big"), value, in: .values)
            try f.shard.put(bytes("small"), bytes("after big"), in: .values)
            let read = try #require(try f.shard.get(bytes("big"), in: .values))
            #expect(read.count == size)
            #expect(read == value)
            #expect(try f.shard.storedBytes() == size + 9)
            try f.shard.delete(bytes("big"), in: .values)
            #expect(try f.shard.storedBytes() == 9)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func concurrentReadersAndWritersSeeWholeBatches(kind: ShardKind) throws {
        try withShard(kind) { f in
            let shard = f.shard
            let writers = 2
            let batchesPerWriter = 50
            let keysPerBatch = 10
            // Each batch writes the same round number under every key of its writer; a reader must
            // never see a mix of rounds within one writer's keys.
            DispatchQueue.concurrentPerform(iterations: writers + 2) { worker in
                if worker < writers {
                    for round in 0..<batchesPerWriter {
                        var batch = WriteBatch()
                        for j in 0..<keysPerBatch {
                            batch.put(bytes("w\(worker)/\(j)"), bigEndian(UInt64(round)), in: .values)
                        }
                        do { try shard.apply(batch) } catch { Issue.record("apply failed: \(error)") }
                    }
                } else {
                    for _ in 0..<200 {
                        for writer in 0..<writers {
                            let entries: [ShardEntry]
                            do {
                                entries = try shard.scan(.values, prefix: bytes("w\(writer)/"), after: nil, limit: 100)
                            } catch {
                                Issue.record("scan failed: \(error)")
                                return
                            }
                            let rounds = Set(entries.map(\.value))
                            #expect(entries.isEmpty || (entries.count == keysPerBatch && rounds.count == 1))
                        }
                    }
                }
            }
            #expect(try shard.count(.values) == writers * keysPerBatch)
            let last = try shard.scan(.values, prefix: [], after: nil, limit: 100)
            #expect(last.allSatisfy { $0.value == bigEndian(UInt64(batchesPerWriter - 1)) })
        }
    }

    // MARK: - update: one read-modify-write transaction

    @Test(arguments: ShardKind.allCases)
    func updateReadsAndWritesInOneTransaction(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("n"), bigEndian(41), in: .values)
            try f.shard.put(bytes("gone"), bytes("old"), in: .versions)
            var seen: (UInt64?, [UInt8]??, [UInt8]??) = (nil, nil, nil)
            try f.shard.update { reader in
                let n = try #require(try reader.get(bytes("n"), in: .values))
                seen = (
                    uint64(bigEndian: n), try reader.get(bytes("missing"), in: .values),
                    try reader.get(bytes("n"), in: .versions)
                )
                var batch = WriteBatch()
                batch.put(bytes("n"), bigEndian(uint64(bigEndian: n) + 1), in: .values)
                batch.put(bytes("n"), bytes("meta"), in: .versions)
                batch.delete(bytes("gone"), in: .versions)
                return batch
            }
            #expect(seen.0 == 41)
            #expect(seen.1 == .some(nil), "a missing key reads as nil")
            #expect(seen.2 == .some(nil), "tables are separate inside an update too")
            #expect(try f.shard.get(bytes("n"), in: .values) == bigEndian(42))
            #expect(try f.shard.get(bytes("n"), in: .versions) == bytes("meta"))
            #expect(try f.shard.get(bytes("gone"), in: .versions) == nil)
            #expect(try f.shard.storedBytes() == 8 + 4)
            // An empty batch changes nothing.
            try f.shard.update { _ in WriteBatch() }
            #expect(try f.shard.get(bytes("n"), in: .values) == bigEndian(42))
            #expect(try f.shard.count(.values) == 1)
        }
    }

    @Test(arguments: ShardKind.allCases)
    func throwingUpdateBodyWritesNothing(kind: ShardKind) throws {
        struct Refused: Error, Equatable {}
        try withShard(kind) { f in
            try f.shard.put(bytes("keep"), bytes("before"), in: .values)
            #expect(throws: Refused()) {
                try f.shard.update { reader in
                    #expect(try reader.get(bytes("keep"), in: .values) == bytes("before"))
                    throw Refused()
                }
            }
            // A body that builds a batch and then throws writes none of it either.
            #expect(throws: Refused()) {
                try f.shard.update { _ in
                    var batch = WriteBatch()
                    batch.put(bytes("keep"), bytes("after"), in: .values)
                    batch.put(bytes("new"), bytes("value"), in: .versions)
                    if !batch.isEmpty { throw Refused() }
                    return batch
                }
            }
            #expect(try f.shard.get(bytes("keep"), in: .values) == bytes("before"))
            #expect(try f.shard.get(bytes("new"), in: .versions) == nil)
            #expect(try f.shard.storedBytes() == 6)
            // The shard is usable afterwards: the transaction was given back.
            try f.shard.update { _ in WriteBatch([.put(.values, key: bytes("keep"), value: bytes("after"))]) }
            #expect(try f.shard.get(bytes("keep"), in: .values) == bytes("after"))
        }
    }

    @Test(arguments: ShardKind.allCases)
    func updateWithAnInvalidKeyWritesNothing(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("keep"), bytes("before"), in: .values)
            #expect(throws: ShardError.invalidKey(length: 0, maxLength: 511)) {
                try f.shard.update { _ in
                    var batch = WriteBatch()
                    batch.put(bytes("keep"), bytes("after"), in: .values)
                    batch.put([], bytes("empty key fails the whole batch"), in: .values)
                    return batch
                }
            }
            #expect(throws: ShardError.invalidKey(length: 600, maxLength: 511)) {
                try f.shard.update { reader in
                    _ = try reader.get([UInt8](repeating: 1, count: 600), in: .values)
                    return WriteBatch([.put(.values, key: bytes("keep"), value: bytes("after"))])
                }
            }
            #expect(try f.shard.get(bytes("keep"), in: .values) == bytes("before"))
        }
    }

    @Test(arguments: ShardKind.allCases)
    func updateVerifiesWhatItReads(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("n"), bigEndian(7), in: .values)
            var raw = try #require(try f.overwriteRawRecord(bytes("n"), in: .values, with: nil))
            raw[raw.count - 1] ^= 0x01
            try f.overwriteRawRecord(bytes("n"), in: .values, with: raw)
            #expect(throws: ShardError.checksumMismatch(table: .values, key: bytes("n"))) {
                try f.shard.update { reader in
                    let n = try reader.get(bytes("n"), in: .values)
                    return WriteBatch([
                        .put(.values, key: bytes("n"), value: bigEndian(uint64(bigEndian: n ?? [])) + [1])
                    ])
                }
            }
            try f.overwriteRawRecord(bytes("n"), in: .values, with: [ShardRecord.currentFormat])
            #expect(throws: ShardError.malformedRecord(table: .values, key: bytes("n"))) {
                try f.shard.update { reader in
                    _ = try reader.get(bytes("n"), in: .values)
                    return WriteBatch()
                }
            }
            // Nothing was written over the damaged record.
            #expect(try f.overwriteRawRecord(bytes("n"), in: .values, with: nil) == [ShardRecord.currentFormat])
        }
    }

    /// Many threads incrementing one counter through `update`: none may read a value another
    /// has already incremented from, so every increment survives. (Two processes doing the same
    /// through `PersistentObjects.store` are tested in `ConcurrentPersistTests`.)
    @Test(arguments: ShardKind.allCases)
    func concurrentUpdatesLoseNoIncrement(kind: ShardKind) throws {
        try withShard(kind, settings: LMDBShard.Settings(noSync: true)) { f in
            let shard = f.shard
            let threads = 4
            let incrementsPerThread = 100
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for i in 0..<incrementsPerThread {
                    do {
                        try shard.update { reader in
                            let n = try reader.get(bytes("counter"), in: .values).map { uint64(bigEndian: $0) } ?? 0
                            var batch = WriteBatch()
                            batch.put(bytes("counter"), bigEndian(n + 1), in: .values)
                            // Each increment also records who made it, under the number it wrote.
                            batch.put(bigEndian(n + 1), bytes("\(thread)/\(i)"), in: .versions)
                            return batch
                        }
                    } catch {
                        Issue.record("update failed: \(error)")
                    }
                }
            }
            let total = UInt64(threads * incrementsPerThread)
            #expect(try shard.get(bytes("counter"), in: .values) == bigEndian(total))
            let numbers = try shard.scan(.versions, prefix: [], after: nil, limit: 1_000).map {
                uint64(bigEndian: $0.key)
            }
            #expect(numbers == Array(1...total))
        }
    }

    // MARK: - read: one consistent snapshot

    @Test(arguments: ShardKind.allCases)
    func readSeesOneCommittedState(kind: ShardKind) throws {
        try withShard(kind) { f in
            try f.shard.put(bytes("a"), bytes("1"), in: .values)
            let (a, missing) = try f.shard.read { reader in
                (try reader.get(bytes("a"), in: .values), try reader.get(bytes("a"), in: .versions))
            }
            #expect(a == bytes("1"))
            #expect(missing == nil)
            struct Refused: Error, Equatable {}
            #expect(throws: Refused()) { try f.shard.read { _ in throw Refused() } }
            // A damaged record fails the read as get does.
            var raw = try #require(try f.overwriteRawRecord(bytes("a"), in: .values, with: nil))
            raw[raw.count - 1] ^= 0x01
            try f.overwriteRawRecord(bytes("a"), in: .values, with: raw)
            #expect(throws: ShardError.checksumMismatch(table: .values, key: bytes("a"))) {
                try f.shard.read { reader in try reader.get(bytes("a"), in: .values) }
            }
        }
    }

    /// A writer puts one round number under two keys in two tables, in one batch; a reader that
    /// reads both in one `read` must always find the same round (two plain gets need not).
    @Test(arguments: ShardKind.allCases)
    func readNeverMixesTwoBatches(kind: ShardKind) throws {
        try withShard(kind, settings: LMDBShard.Settings(noSync: true)) { f in
            let shard = f.shard
            let rounds = 300
            DispatchQueue.concurrentPerform(iterations: 2) { worker in
                if worker == 0 {
                    for round in 1...rounds {
                        var batch = WriteBatch()
                        batch.put(bytes("x"), bigEndian(UInt64(round)), in: .values)
                        batch.put(bytes("x"), bigEndian(UInt64(round)), in: .versions)
                        do { try shard.apply(batch) } catch { Issue.record("apply failed: \(error)") }
                    }
                } else {
                    for _ in 0..<rounds {
                        do {
                            let (value, meta) = try shard.read { reader in
                                (try reader.get(bytes("x"), in: .values), try reader.get(bytes("x"), in: .versions))
                            }
                            #expect(value == meta)
                        } catch {
                            Issue.record("read failed: \(error)")
                        }
                    }
                }
            }
        }
    }
}
