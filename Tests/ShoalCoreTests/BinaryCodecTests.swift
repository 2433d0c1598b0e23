import ShoalCore
import Testing

private func roundTrip<T: Codable & Equatable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) throws {
    let bytes = try BinaryEncoder().encode(value)
    let back = try BinaryDecoder().decode(T.self, from: bytes)
    #expect(back == value, "round trip of \(value)", sourceLocation: sourceLocation)
}

private struct Point: Codable, Equatable {
    var x: Double
    var y: Double
}

private struct Shape: Codable, Equatable {
    var name: String
    var corners: [Point]
    var origin: Point
    var tags: [String: Int]
    var note: String?
    var weight: Double?
}

private enum Event: Codable, Equatable {
    case started(at: Int64)
    case moved(Point, by: Double)
    case tagged(String?)
    case stopped
}

private struct Optionals: Codable, Equatable {
    var a: Int?
    var b: Int??
    var c: Int???
    var d: [Int?]
    var e: [String?]?
    var f: Point?
}

/// Decodes `Optionals`' fields by hand with decodeIfPresent, in reverse order.
private struct ReverseReader: Decodable, Equatable {
    var f: Point?
    var a: Int?
    var missing: String?
    enum CodingKeys: String, CodingKey { case a, f, missing }
    init(f: Point?, a: Int?) {
        self.f = f
        self.a = a
        missing = nil
    }
    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        f = try c.decodeIfPresent(Point.self, forKey: .f)
        missing = try c.decodeIfPresent(String.self, forKey: .missing)
        a = try c.decodeIfPresent(Int.self, forKey: .a)
    }
}

private struct Widths: Codable, Equatable {
    var i8: Int8, i16: Int16, i32: Int32, i64: Int64, i: Int
    var u8: UInt8, u16: UInt16, u32: UInt32, u64: UInt64, u: UInt
}

private struct FastArrays: Codable, Equatable {
    var d: [Double]
    var f: [Float]
    var i: [Int]
    var i64: [Int64]
    var i32: [Int32]
    var u64: [UInt64]
    var u32: [UInt32]
    var u8: [UInt8]
}

/// A recursive value for nesting and random tests.
private indirect enum Tree: Codable, Equatable {
    case leaf(Int)
    case text(String)
    case real(Double)
    case maybe(Tree?)
    case list([Tree])
    case map([String: Tree])
    case flag(Bool)
}

/// Opts in to the fast path through `BinaryContiguous`.
private struct Samples: Codable, Equatable, BinaryContiguous {
    var values: [Float]
    var binaryScalars: [Float] { values }
    init(values: [Float]) { self.values = values }
    init(binaryScalars: [Float]) { values = binaryScalars }
}

@Suite("BinaryCodec")
struct BinaryCodecTests {
    @Test func structsNestedStructsAndArraysOfStructs() throws {
        let shape = Shape(
            name: "triangle", corners: [Point(x: 0, y: 0), Point(x: 1, y: 0), Point(x: 0.5, y: 0.75)],
            origin: Point(x: -3, y: 4), tags: ["a": 1, "bee": -2], note: nil, weight: 2.5)
        try roundTrip(shape)
        try roundTrip([shape, shape])
        try roundTrip([Point]())
    }

    @Test func enumsWithAssociatedValues() throws {
        let events: [Event] = [
            .started(at: .min), .moved(Point(x: 1, y: 2), by: 3), .tagged(nil), .tagged("x"), .stopped,
        ]
        try roundTrip(events)
        for e in events { try roundTrip(e) }
    }

    @Test func optionalsNestedAndAbsent() throws {
        let all = Optionals(
            a: 1, b: .some(.some(2)), c: .some(.some(.some(3))), d: [1, nil, 3, nil], e: ["x", nil],
            f: Point(x: 1, y: 1))
        let nils = Optionals(a: nil, b: nil, c: nil, d: [nil, nil], e: nil, f: nil)
        let inner = Optionals(a: nil, b: .some(nil), c: .some(.some(nil)), d: [], e: [nil], f: nil)
        let middle = Optionals(a: 0, b: .some(.some(0)), c: .some(nil), d: [0], e: [], f: nil)
        for v in [all, nils, inner, middle] { try roundTrip(v) }
        // Top-level and nested optionals.
        try roundTrip(Int?.none)
        try roundTrip(Int?.some(0))
        try roundTrip(Int??.some(nil))
        try roundTrip([Int??]([.none, .some(.none), .some(.some(7))]))
        // Fields read out of order by decodeIfPresent, with a key that was never written.
        let bytes = try BinaryEncoder().encode(all)
        #expect(
            try BinaryDecoder().decode(ReverseReader.self, from: bytes) == ReverseReader(f: Point(x: 1, y: 1), a: 1))
        let nilBytes = try BinaryEncoder().encode(nils)
        #expect(try BinaryDecoder().decode(ReverseReader.self, from: nilBytes) == ReverseReader(f: nil, a: nil))
    }

    @Test func missingRequiredKeyIsAnErrorWithItsPath() throws {
        struct Small: Codable { var x: Double }
        struct Wrapper: Codable { var p: Small }
        struct Big: Codable { var p: Point }
        let bytes = try BinaryEncoder().encode(Wrapper(p: Small(x: 1)))
        let error = #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode(Big.self, from: bytes) }
        #expect(error?.kind == .malformed)
        #expect(error?.codingPath == ["p", "y"])
    }

    @Test func dictionariesWithStringAndIntKeys() throws {
        try roundTrip(["": 0, "one": 1, "é🙂": 2])
        let byInt: [Int: String] = [-1: "minus", 0: "", Int.max: "max"]
        try roundTrip(byInt)
        let nested: [String: [Int: Point]] = ["p": [1: Point(x: 1, y: 2)], "q": [:]]
        try roundTrip(nested)
        let many = Dictionary(uniqueKeysWithValues: (0..<500).map { ("k\($0)", $0) })
        try roundTrip(many)
    }

    @Test func integerWidthsAtTheirLimits() throws {
        let low = Widths(
            i8: .min, i16: .min, i32: .min, i64: .min, i: .min, u8: .min, u16: .min, u32: .min, u64: .min, u: .min)
        let high = Widths(
            i8: .max, i16: .max, i32: .max, i64: .max, i: .max, u8: .max, u16: .max, u32: .max, u64: .max, u: .max)
        try roundTrip(low)
        try roundTrip(high)
        try roundTrip([Int8.min, -1, 0, 1, .max])
        try roundTrip([UInt16.min, .max])
        try roundTrip(Int.min)
        try roundTrip(UInt64.max)
    }

    @Test func floatsIncludingNaNInfinityAndNegativeZero() throws {
        let doubles: [Double] = [
            0, -0.0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude, .pi,
        ]
        let floats: [Float] = [0, -0.0, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude]
        struct Reals: Codable { var d: Double; var f: Float }
        for (d, f) in zip(doubles, floats) {
            let back = try BinaryDecoder().decode(Reals.self, from: BinaryEncoder().encode(Reals(d: d, f: f)))
            #expect(back.d.bitPattern == d.bitPattern && back.f.bitPattern == f.bitPattern)
        }
        let arrays = try BinaryDecoder().decode([Double].self, from: BinaryEncoder().encode(doubles))
        #expect(arrays.map(\.bitPattern) == doubles.map(\.bitPattern))
        let signalling = Double(bitPattern: 0x7FF4_0000_0000_0001)
        #expect(
            try BinaryDecoder().decode(Double.self, from: BinaryEncoder().encode(signalling)).bitPattern
                == signalling.bitPattern)
    }

    @Test func boolsStringsAndEmptyValues() throws {
        try roundTrip([true, false, true])
        try roundTrip("")
        try roundTrip(["", "a", "ünïcødé", "日本語", "👩‍👩‍👧‍👦", String(repeating: "x", count: 300)])
        try roundTrip([String]())
        try roundTrip([[Int]]([[], [1], []]))
        try roundTrip([String: Int]())
    }

    @Test func fastPathArraysRoundTrip() throws {
        let v = FastArrays(
            d: [1.5, -2, .pi], f: [0.25, -1], i: [.min, 0, .max], i64: [.min, .max], i32: [.min, -1, .max],
            u64: [0, .max], u32: [.max], u8: Array(0...255))
        try roundTrip(v)
        try roundTrip(FastArrays(d: [], f: [], i: [], i64: [], i32: [], u64: [], u32: [], u8: []))
        try roundTrip(Samples(values: [1, 2, 3.5]))
        let big = (0..<100_000).map { Double($0) * 0.5 }
        let bytes = try BinaryEncoder().encode(big)
        // version, 0 keys, presence, varint(100_000) = 3 bytes, then the raw doubles.
        #expect(bytes.count == 1 + 1 + 1 + 3 + 800_000)
        #expect(try BinaryDecoder().decode([Double].self, from: bytes) == big)
    }

    @Test func fastPathLayoutByteForByte() throws {
        // [Double] [1.0, -2.0]: version 1, key table of 0, presence 1, count 2, then LE binary64.
        let doubles = try BinaryEncoder().encode([1.0, -2.0])
        #expect(doubles == [1, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F, 0, 0, 0, 0, 0, 0, 0, 0xC0])
        let ints = try BinaryEncoder().encode([Int32(1), -1])
        #expect(ints == [1, 0, 1, 2, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF])
        // A keyed container: key table ["x"], then presence, container length, entry 0 of 8 bytes.
        struct X: Codable { var x: UInt64 }
        let keyed = try BinaryEncoder().encode(X(x: 0x0102))
        #expect(keyed == [1, 1, 1, 0x78, 1, 10, 0, 8, 0x02, 0x01, 0, 0, 0, 0, 0, 0])
        // An unkeyed container of optionals: length, count 3, one nil at index 1, two bytes.
        let unkeyed = try BinaryEncoder().encode([Bool?]([true, nil, false]))
        #expect(unkeyed == [1, 0, 1, 5, 3, 1, 1, 1, 0])
        // An absent key writes nothing; a nil written with encode writes a zero-length entry.
        struct N: Codable {
            var n: Int?
            func encode(to encoder: any Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(n, forKey: .n)
            }
        }
        #expect(try BinaryEncoder().encode(N(n: nil)) == [1, 1, 1, 0x6E, 1, 2, 0, 0])
        #expect(try BinaryDecoder().decode(N.self, from: [1, 1, 1, 0x6E, 1, 2, 0, 0]).n == nil)
        #expect(try BinaryEncoder().encode(Optionals(a: nil, b: nil, c: nil, d: [], e: nil, f: nil)).count < 16)
    }

    @Test func binaryCodecIsDetectable() throws {
        struct Probe: Codable, Equatable {
            var sawBinary = false
            init() {}
            init(from decoder: any Decoder) throws {
                sawBinary = BinaryCodec.isBinary(decoder)
                _ = try decoder.singleValueContainer().decode(Bool.self)
            }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.singleValueContainer()
                try c.encode(BinaryCodec.isBinary(encoder))
            }
        }
        let bytes = try BinaryEncoder().encode(Probe())
        #expect(bytes == [1, 0, 1, 1])
        #expect(try BinaryDecoder().decode(Probe.self, from: bytes).sawBinary)
    }

    @Test(arguments: [1, 2, 3]) func seededRandomNestedValues(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        for round in 0..<200 {
            let tree = randomTree(&rng, depth: 0)
            let bytes = try BinaryEncoder().encode(tree)
            let back = try BinaryDecoder().decode(Tree.self, from: bytes)
            #expect(equalBits(back, tree), "seed \(seed), round \(round): \(tree)")
        }
    }

    @Test func everyTruncationThrows() throws {
        let shape = Shape(
            name: "n", corners: [Point(x: 1, y: 2)], origin: Point(x: 0, y: 0), tags: ["t": 1], note: "é", weight: nil)
        let samples: [[UInt8]] = [
            try BinaryEncoder().encode(shape),
            try BinaryEncoder().encode(Optionals(a: 1, b: .some(nil), c: nil, d: [nil, 2], e: ["a"], f: nil)),
            try BinaryEncoder().encode([1.0, 2.0, 3.0]),
            try BinaryEncoder().encode(Event.moved(Point(x: 1, y: 2), by: 3)),
        ]
        for bytes in samples {
            for n in 0..<bytes.count {
                let prefix = Array(bytes[0..<n])
                #expect(throws: (any Error).self, "prefix of \(n) of \(bytes.count) bytes") {
                    _ = try decodeAny(prefix, like: bytes)
                }
            }
            // Trailing garbage is refused too.
            #expect(throws: BinaryDecodingError.self) { _ = try decodeAny(bytes + [0], like: bytes) }
        }
    }

    @Test func randomBytesNeverCrash() throws {
        var rng = SeededGenerator(seed: 42)
        let valid = try BinaryEncoder().encode(
            Shape(
                name: "s", corners: [Point(x: 1, y: 1)], origin: Point(x: 2, y: 2), tags: ["a": 1], note: nil, weight: 1
            ))
        var decoded = 0
        var refused = 0
        for _ in 0..<3000 {
            var bytes: [UInt8]
            if Bool.random(using: &rng) {
                bytes = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {  // mutate a valid encoding, which reaches deeper into the decoder
                bytes = valid
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            for attempt in 0..<3 {
                do {
                    switch attempt {
                    case 0: _ = try BinaryDecoder().decode(Shape.self, from: bytes)
                    case 1: _ = try BinaryDecoder().decode(Tree.self, from: bytes)
                    default: _ = try BinaryDecoder().decode([String?].self, from: bytes)
                    }
                    decoded += 1
                } catch {
                    refused += 1
                }
            }
        }
        #expect(decoded + refused == 9000)
        #expect(refused > 0)
    }

    @Test func hugeClaimedLengthIsRefusedWithoutAllocating() throws {
        // [Double] claiming 2^60 elements: refused by the element limit before any allocation.
        var bytes: [UInt8] = [1, 0, 1]
        var v: UInt64 = 1 << 60
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7f) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
        let error = #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode([Double].self, from: bytes) }
        #expect(error?.kind == .limitExceeded)
        // Within the limit but beyond the bytes: truncated, still without allocating.
        let short: [UInt8] = [1, 0, 1, 0x80, 0x80, 0x40]  // 1 Mi doubles claimed, none present
        let truncated = #expect(throws: BinaryDecodingError.self) {
            try BinaryDecoder().decode([Double].self, from: short)
        }
        #expect(truncated?.kind == .truncated)
        // A string claiming more bytes than exist, and a lowered element limit.
        let string: [UInt8] = [1, 0, 1, 0xFF, 0xFF, 0xFF, 0x7F, 0x61]
        #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode(String.self, from: string) }
        let limited = BinaryDecoder(limits: BinaryDecodingLimits(maxElementCount: 2))
        let three = try BinaryEncoder().encode([Point(x: 1, y: 1), Point(x: 2, y: 2), Point(x: 3, y: 3)])
        let limit = #expect(throws: BinaryDecodingError.self) { try limited.decode([Point].self, from: three) }
        #expect(limit?.kind == .limitExceeded)
        #expect(try BinaryDecoder().decode([Point].self, from: three).count == 3)
    }

    @Test func excessiveNestingIsRefused() throws {
        var tree = Tree.leaf(1)
        for _ in 0..<40 { tree = .list([tree]) }
        let bytes = try BinaryEncoder().encode(tree)
        let error = #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode(Tree.self, from: bytes) }
        #expect(error?.kind == .limitExceeded)
        let deep = BinaryDecoder(limits: BinaryDecodingLimits(maxDepth: 1000))
        #expect(try deep.decode(Tree.self, from: bytes) == tree)
    }

    @Test func selfWrappingOptionalsAreBoundedByDepth() throws {
        // Each level is one presence byte inside the previous one: without a bound, hostile
        // input of many 0x01 bytes would recurse once per byte.
        indirect enum Chain: Codable, Equatable {
            case link(Chain??)
            init(from decoder: any Decoder) throws {
                self = .link(try decoder.singleValueContainer().decode(Chain??.self))
            }
            func encode(to encoder: any Encoder) throws {
                var c = encoder.singleValueContainer()
                switch self {
                case .link(let next): try c.encode(next)
                }
            }
        }
        let hostile: [UInt8] = [1, 0] + [UInt8](repeating: 1, count: 100_000)
        let error = #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode(Chain.self, from: hostile) }
        #expect(error?.kind == .limitExceeded)
        let short = Chain.link(.some(.link(.some(nil))))
        try roundTrip(short)
    }

    @Test func malformedBytesNameOffsetAndPath() throws {
        struct Flags: Codable { var on: Bool }
        var bytes = try BinaryEncoder().encode(Flags(on: true))
        bytes[bytes.count - 1] = 7
        let error = #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode(Flags.self, from: bytes) }
        #expect(error?.kind == .malformed)
        #expect(error?.offset == bytes.count - 1)
        #expect(error?.codingPath == ["on"])
        let version = #expect(throws: BinaryDecodingError.self) {
            try BinaryDecoder().decode(Bool.self, from: [2, 0, 1, 1])
        }
        #expect(version?.kind == .malformed)
        // Type mismatch inside a keyed entry: an Int64 read as Int32 does not fill the entry.
        struct Wide: Codable { var n: Int64 }
        struct Narrow: Codable { var n: Int32 }
        #expect(throws: BinaryDecodingError.self) {
            try BinaryDecoder().decode(Narrow.self, from: BinaryEncoder().encode(Wide(n: 5)))
        }
        // Invalid UTF-8.
        #expect(throws: BinaryDecodingError.self) { try BinaryDecoder().decode(String.self, from: [1, 0, 1, 1, 0xFF]) }
    }
}

/// Decodes `bytes` as the type `like` was encoded from (by trying each sample type).
private func decodeAny(_ bytes: [UInt8], like original: [UInt8]) throws -> Any {
    // Each original decodes as exactly one of these; use the one that decodes the original.
    let d = BinaryDecoder()
    if (try? d.decode(Shape.self, from: original)) != nil { return try d.decode(Shape.self, from: bytes) }
    if (try? d.decode(Optionals.self, from: original)) != nil { return try d.decode(Optionals.self, from: bytes) }
    if (try? d.decode(Event.self, from: original)) != nil { return try d.decode(Event.self, from: bytes) }
    return try d.decode([Double].self, from: bytes)
}

private func randomString(_ rng: inout SeededGenerator) -> String {
    let alphabet: [Character] = ["a", "z", "0", " ", "é", "ß", "日", "🙂", "\u{0}", "\n"]
    return String((0..<Int.random(in: 0..<8, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! })
}

private func randomTree(_ rng: inout SeededGenerator, depth: Int) -> Tree {
    let leafOnly = depth >= 5
    switch Int.random(in: 0..<(leafOnly ? 4 : 7), using: &rng) {
    case 0: return .leaf(Int(truncatingIfNeeded: rng.next()))
    case 1: return .text(randomString(&rng))
    case 2: return .real(Double(bitPattern: rng.next()))
    case 3: return .flag(Bool.random(using: &rng))
    case 4: return .maybe(Bool.random(using: &rng) ? nil : randomTree(&rng, depth: depth + 1))
    case 5: return .list((0..<Int.random(in: 0..<4, using: &rng)).map { _ in randomTree(&rng, depth: depth + 1) })
    default:
        var map: [String: Tree] = [:]
        for _ in 0..<Int.random(in: 0..<4, using: &rng) { map[randomString(&rng)] = randomTree(&rng, depth: depth + 1) }
        return .map(map)
    }
}

/// Equality that compares doubles by bits, so NaN payloads count.
private func equalBits(_ a: Tree, _ b: Tree) -> Bool {
    switch (a, b) {
    case (.real(let x), .real(let y)): return x.bitPattern == y.bitPattern
    case (.maybe(let x), .maybe(let y)):
        switch (x, y) {
        case (nil, nil): return true
        case (let x?, let y?): return equalBits(x, y)
        default: return false
        }
    case (.list(let x), .list(let y)): return x.count == y.count && zip(x, y).allSatisfy { equalBits($0, $1) }
    case (.map(let x), .map(let y)):
        return x.count == y.count && x.allSatisfy { k, v in y[k].map { equalBits(v, $0) } ?? false }
    default: return a == b
    }
}
