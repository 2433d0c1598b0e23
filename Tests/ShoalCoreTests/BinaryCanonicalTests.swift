import ShoalCore
import Testing

private struct Cell: Codable, Hashable {
    var row: Int
    var col: Int
}

private enum Colour: String, Codable, CodingKeyRepresentable {
    case red, green, blue
}

private enum Rank: Int, Codable, CodingKeyRepresentable {
    case low = 2, middle = 10, high = 100
}

private struct Holder: Codable, Equatable {
    var name: String
    var weights: [String: Double]
    var seen: Set<Int>
}

/// The same entries inserted in opposite orders into tables of different capacities, so that
/// the two dictionaries iterate in different orders (checked, so each test shows something).
private func twoOrders<K: Hashable, V>(_ pairs: [(K, V)]) -> ([K: V], [K: V]) {
    var a: [K: V] = [:]
    for (k, v) in pairs { a[k] = v }
    var b = [K: V](minimumCapacity: pairs.count * 8)
    for (k, v) in pairs.reversed() { b[k] = v }
    return (a, b)
}

private func twoOrders<E: Hashable>(_ elements: [E]) -> (Set<E>, Set<E>) {
    var a = Set<E>()
    for e in elements { a.insert(e) }
    var b = Set<E>(minimumCapacity: elements.count * 8)
    for e in elements.reversed() { b.insert(e) }
    return (a, b)
}

/// The key names of a message's key table, in table order.
private func keyTable(_ bytes: [UInt8]) -> [String] {
    var p = 1
    func varint() -> Int {
        var v = 0
        var shift = 0
        while true {
            let b = bytes[p]
            p += 1
            v |= Int(b & 0x7f) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }
    return (0..<varint()).map { _ in
        let n = varint()
        defer { p += n }
        return String(decoding: bytes[p..<p + n], as: UTF8.self)
    }
}

/// One value, one encoding: dictionaries and sets are written in a canonical order, so their
/// bytes (and digests) do not depend on insertion order, table capacity or the process's seed.
@Suite("BinaryCodec: one value, one encoding")
struct BinaryCanonicalTests {
    @Test func stringKeyedDictionariesEncodeIdenticallyInAnyInsertionOrder() throws {
        let (a, b) = twoOrders((0..<2_000).map { ("key \($0 * 7919 % 2_000)", Double($0)) })
        #expect(Array(a.keys) != Array(b.keys), "the two tables iterate alike; the test shows nothing")
        #expect(a == b)
        let bytes = try BinaryEncoder().encode(a)
        #expect(try BinaryEncoder().encode(b) == bytes)
        #expect(try BinaryDecoder().decode([String: Double].self, from: bytes) == a)
        // Entries, and so the key table, in the UTF-8 order of the keys.
        let inUTF8Order = keyTable(bytes) == a.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
        #expect(inUTF8Order)
    }

    @Test func stringKeysAreOrderedByTheirUTF8Bytes() throws {
        let bytes = try BinaryEncoder().encode(["b": Int8(1), "a": 2, "é": 3, "Z": 4, "": 5])
        // "" < "Z" (0x5a) < "a" < "b" < "é" (0xc3 0xa9): bytes, not Unicode collation.
        #expect(keyTable(bytes) == ["", "Z", "a", "b", "é"])
        let x = try BinaryEncoder().encode(["b": Int8(1), "a": 2])
        #expect(x == [1, 2, 1, 0x61, 1, 0x62, 1, 6, 0, 1, 2, 1, 1, 1])
    }

    @Test func intKeyedDictionariesAreOrderedByValue() throws {
        let (a, b) = twoOrders((0..<3_000).map { ($0 * 7_919 % 3_000 - 1_500, "v\($0)") })
        #expect(Array(a.keys) != Array(b.keys))
        let bytes = try BinaryEncoder().encode(a)
        #expect(try BinaryEncoder().encode(b) == bytes)
        #expect(try BinaryDecoder().decode([Int: String].self, from: bytes) == a)
        let inNumericOrder = keyTable(bytes) == a.keys.sorted().map { "\($0)" }
        #expect(inNumericOrder)
        #expect(
            keyTable(try BinaryEncoder().encode([10: 0, -1: 0, 2: 0, Int.min: 0])) == ["\(Int.min)", "-1", "2", "10"])
    }

    @Test func codingKeyRepresentableKeys() throws {
        let colours: [Colour: Int] = [.red: 1, .green: 2, .blue: 3]
        let bytes = try BinaryEncoder().encode(colours)
        #expect(keyTable(bytes) == ["blue", "green", "red"])
        #expect(try BinaryDecoder().decode([Colour: Int].self, from: bytes) == colours)
        let ranks: [Rank: String] = [.high: "h", .low: "l", .middle: "m"]
        let rankBytes = try BinaryEncoder().encode(ranks)
        #expect(keyTable(rankBytes) == ["2", "10", "100"])
        #expect(try BinaryDecoder().decode([Rank: String].self, from: rankBytes) == ranks)
    }

    /// Keys that are neither strings, integers nor coding keys: the standard library writes an
    /// unkeyed container of alternating keys and values; the pairs are ordered by the bytes of
    /// each key's own encoding.
    @Test func otherKeysAreOrderedByTheirEncoding() throws {
        let (a, b) = twoOrders((0..<1_000).map { (Cell(row: $0 % 37, col: $0 / 37), $0) })
        #expect(Array(a.keys) != Array(b.keys))
        let bytes = try BinaryEncoder().encode(a)
        #expect(try BinaryEncoder().encode(b) == bytes)
        #expect(try BinaryDecoder().decode([Cell: Int].self, from: bytes) == a)
        // Alternating key, value, as the standard library's decoder expects.
        struct Pairs: Decodable {
            var keys: [Cell] = []
            init(from decoder: any Decoder) throws {
                var c = try decoder.unkeyedContainer()
                while !c.isAtEnd {
                    keys.append(try c.decode(Cell.self))
                    _ = try c.decode(Int.self)
                }
            }
        }
        let written = try BinaryDecoder().decode(Pairs.self, from: bytes).keys
        let encoded = try written.map { try BinaryEncoder().encode($0) }
        #expect(zip(encoded, encoded.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) })
        #expect(Set(written) == Set(a.keys))
    }

    @Test func setsEncodeIdenticallyInAnyInsertionOrder() throws {
        let (a, b) = twoOrders((0..<2_000).map { $0 * 7_919 % 2_000 })
        #expect(Array(a) != Array(b))
        let bytes = try BinaryEncoder().encode(a)
        #expect(try BinaryEncoder().encode(b) == bytes)
        #expect(try BinaryDecoder().decode(Set<Int>.self, from: bytes) == a)
        let (s, t) = twoOrders((0..<500).map { "word \($0)" })
        #expect(Array(s) != Array(t))
        #expect(try BinaryEncoder().encode(s) == BinaryEncoder().encode(t))
        #expect(try BinaryDecoder().decode(Set<String>.self, from: BinaryEncoder().encode(s)) == s)
    }

    @Test func nestedUnorderedValuesAreCanonicalToo() throws {
        let (w1, w2) = twoOrders((0..<300).map { ("w\($0)", Double($0) / 3) })
        let (s1, s2) = twoOrders(Array(0..<300))
        let x = Holder(name: "h", weights: w1, seen: s1)
        let y = Holder(name: "h", weights: w2, seen: s2)
        let bytes = try BinaryEncoder().encode(x)
        #expect(try BinaryEncoder().encode(y) == bytes)
        #expect(try BinaryDecoder().decode(Holder.self, from: bytes) == x)
        let (m1, m2) = twoOrders((0..<200).map { ($0, twoOrders(Array(0..<($0 % 20))).0) })
        let (n1, n2) = twoOrders((0..<200).map { ($0, twoOrders(Array(0..<($0 % 20))).1) })
        let maps = try [m1, m2, n1, n2].map { try BinaryEncoder().encode(["m": $0]) }
        #expect(Set(maps).count == 1)
        let optional: [String: Double]?? = .some(w2)
        #expect(try BinaryEncoder().encode(optional) == BinaryEncoder().encode(Optional(Optional(w1))))
        #expect(try BinaryEncoder().encode([w1, w2]) == BinaryEncoder().encode([w2, w1]))
    }

    @Test func emptyDictionariesAndSetsKeepTheirContainers() throws {
        #expect(try BinaryEncoder().encode([String: Int]()) == [1, 0, 1, 0])
        #expect(try BinaryEncoder().encode(Set<Int>()) == [1, 0, 1, 2, 0, 0])
        #expect(try BinaryEncoder().encode([Cell: Int]()) == [1, 0, 1, 2, 0, 0])
        #expect(try BinaryDecoder().decode([Cell: Int].self, from: [1, 0, 1, 2, 0, 0]).isEmpty)
    }
}
