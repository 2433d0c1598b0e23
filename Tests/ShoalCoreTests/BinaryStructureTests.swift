import Testing

@testable import ShoalCore

private struct Record: Codable {
    var id: Int
    var label: String
    var weights: [String: Double]
    var tags: Set<String>
    var values: [Float]
    var children: [Record]
    var note: String?
}

private let record = Record(
    id: 42, label: "top", weights: ["b": 0.5, "a": 1.5], tags: ["x", "y"], values: [1, 2, 3],
    children: [Record(id: 7, label: "kid", weights: [:], tags: [], values: [], children: [], note: "n")], note: nil)

/// Whether the decoder accepts `bytes`' header (version, key table) and top-level presence byte:
/// what `BinaryStructure` refuses as `Malformed` is exactly what the decoder refuses there.
private func decoderAcceptsHeader(_ bytes: [UInt8]) -> Bool {
    let state = DecodingState(bytes: bytes, limits: .default)
    guard let p = try? state.readHeader(),
        let slot = try? state.presenceSlot(cursor: DecodingCursor(position: p, end: bytes.count), at: p, path: [])
    else { return false }
    // A nil is the last byte; a value takes at least one.
    return slot.isNil ? p + 1 == bytes.count : p + 1 < bytes.count
}

/// `BinaryStructure` (what `shoal kv get` prints) reads the layout through the decoder's own
/// readers, and is total: any bytes give a bounded text or `Malformed`, never a trap.
@Suite("BinaryStructure")
struct BinaryStructureTests {
    @Test func randomBytesNeverTrapAndAgreeWithTheDecoderOnTheHeader() throws {
        var rng = SeededGenerator(seed: 2026)
        var shown = 0
        for i in 0..<20_000 {
            let count = Int(rng.next() % 96)
            // Mostly small bytes, so that lengths, counts and key indices often fit; sometimes any byte.
            var bytes = (0..<count).map { _ in
                UInt8(truncatingIfNeeded: rng.next() % 6 == 0 ? rng.next() : rng.next() % 5)
            }
            if i % 4 != 0 && !bytes.isEmpty { bytes[0] = BinaryCodec.version }
            let accepted = decoderAcceptsHeader(bytes)
            do {
                let text = try BinaryStructure.describe(bytes, maxLines: 200)
                #expect(accepted, "shown but the decoder refuses the header: \(bytes)")
                #expect(text.split(separator: "\n").count <= 201)
                shown += 1
            } catch is BinaryStructure.Malformed {
                #expect(!accepted, "refused but the decoder accepts the header: \(bytes)")
            }
        }
        #expect(shown > 1_000)
    }

    @Test func everyTruncationAndCorruptionOfValidEncodingsIsTotal() throws {
        let encodings = [
            try BinaryEncoder().encode(record),
            try BinaryEncoder().encode([[1.0, 2.0], [3.0]]),
            try BinaryEncoder().encode([Int8?](repeating: nil, count: 5) + [1]),
            try BinaryEncoder().encode(Set(0..<40)),
            try BinaryEncoder().encode(["k": [1: "one", 2: "two"]]),
        ]
        for bytes in encodings {
            #expect(try BinaryStructure.describe(bytes).hasPrefix("binary encoding version 1, "))
            for cut in 0..<bytes.count {
                let truncated = Array(bytes.prefix(cut))
                // A cut value can still be well formed (its last region reads as something else),
                // but a cut header never is.
                do {
                    _ = try BinaryStructure.describe(truncated)
                    #expect(decoderAcceptsHeader(truncated))
                } catch is BinaryStructure.Malformed {
                    #expect(!decoderAcceptsHeader(truncated))
                }
            }
            for i in bytes.indices {
                for flip: UInt8 in [0x01, 0x80, 0xff] {
                    var corrupted = bytes
                    corrupted[i] ^= flip
                    _ = try? BinaryStructure.describe(corrupted)
                }
            }
        }
    }

    /// The header rules are the decoder's: a key name listed twice, a key count larger than the
    /// bytes, a name that is not UTF-8 or longer than the bytes are all refused.
    @Test func headerRulesAreTheDecoders() throws {
        let refused: [[UInt8]] = [
            [], [0], [2, 0, 1, 0], [1], [1, 0], [1, 0, 1], [1, 0, 2, 0], [1, 0, 0, 0],
            [1, 2, 1, 0x61, 1, 0x61, 1, 2, 0, 0],  // "a" twice in the key table
            [1, 9, 1, 0x61, 1, 0],  // 9 names in 4 bytes
            [1, 1, 5, 0x61, 1],  // a name longer than the bytes
            [1, 1, 1, 0xc3, 1, 0],  // not UTF-8
            [1] + [UInt8](repeating: 0xff, count: 11),  // a varint longer than 64 bits
        ]
        for bytes in refused {
            #expect(throws: BinaryStructure.Malformed.self, "\(bytes)") { try BinaryStructure.describe(bytes) }
            #expect(!decoderAcceptsHeader(bytes), "\(bytes)")
        }
        #expect(try BinaryStructure.describe([1, 0, 0]).hasSuffix("\nnil\n"))
        let error = #expect(throws: BinaryStructure.Malformed.self) {
            try BinaryStructure.describe([1, 2, 1, 0x61, 1, 0x61, 1, 2, 0, 0])
        }
        #expect(error?.offset == 4)
        #expect(error?.description.contains("twice in the key table") == true)
    }

    @Test func canonicalDictionariesShowInKeyOrder() throws {
        let text = try BinaryStructure.describe(try BinaryEncoder().encode(record))
        #expect(text.contains("key names: \"id\", \"label\", \"weights\", \"a\", \"b\", \"tags\""), "\(text)")
        #expect(text.contains("  weights: {\n    a: 00 00 00 00 00 00 f8 3f (Double 1.5"), "\(text)")
        #expect(text.contains("  tags: [2 elements\n    [0] \"x\"\n    [1] \"y\"\n"), "\(text)")
    }
}
