/// One value, one encoding: `Dictionary` and `Set` are written in a canonical order, not in the
/// order they iterate (which Swift seeds per process), so the same value encodes to the same
/// bytes in every process, and its digest can be compared across peers.
///
/// Both are written in exactly the containers their standard `Codable` conformances use, so the
/// standard `init(from:)` reads them back; only the order of the entries is chosen here:
///
/// - a dictionary keyed by `String`: a keyed container, entries by the UTF-8 bytes of the key;
/// - keyed by `Int`: a keyed container (key names are the decimal numbers), entries by value;
/// - keyed by a `CodingKeyRepresentable` type: a keyed container, entries by the key's
///   `intValue` where both keys have one, otherwise by the UTF-8 bytes of its `stringValue`;
/// - keyed by any other `Encodable` type: an unkeyed container of alternating keys and values,
///   pairs ordered by the bytes of each key's own encoding (`BinaryEncoder().encode(key)`);
/// - a `Set`: an unkeyed container, elements ordered by the bytes of their own encoding.
protocol BinaryUnorderedEncodable {
    func encodeCanonically(state: EncodingState, slot: EncodingSlot, path: [any CodingKey]) throws
}

/// The key of a dictionary entry in a keyed container (the standard library's own is internal).
/// Only `stringValue` is written; `intValue` is what `Int`-keyed dictionaries sort by.
struct BinaryDictionaryKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) {
        self.stringValue = stringValue
        intValue = nil
    }

    init(intValue: Int) {
        stringValue = "\(intValue)"
        self.intValue = intValue
    }

    init(_ key: some CodingKey) {
        stringValue = key.stringValue
        intValue = key.intValue
    }

    /// Integer keys by value, before keys without one; then by the UTF-8 bytes of the name.
    static func precedes(_ a: BinaryDictionaryKey, _ b: BinaryDictionaryKey) -> Bool {
        switch (a.intValue, b.intValue) {
        case (let x?, let y?) where x != y: return x < y
        case (.some, nil): return true
        case (nil, .some): return false
        default: return a.stringValue.utf8.lexicographicallyPrecedes(b.stringValue.utf8)
        }
    }
}

/// `items` in ascending order of the bytes of `sortKey(item)`'s own encoding.
private func sortedByEncoding<Item, K: Encodable>(_ items: [Item], _ sortKey: (Item) -> K) throws -> [Item] {
    let encoder = BinaryEncoder()
    var keyed: [(bytes: [UInt8], item: Item)] = []
    keyed.reserveCapacity(items.count)
    for item in items { keyed.append((try encoder.encode(sortKey(item)), item)) }
    keyed.sort { $0.bytes.lexicographicallyPrecedes($1.bytes) }
    return keyed.map(\.item)
}

extension Dictionary: BinaryUnorderedEncodable where Key: Encodable, Value: Encodable {
    func encodeCanonically(state: EncodingState, slot: EncodingSlot, path: [any CodingKey]) throws {
        let codingKey: (Key) -> BinaryDictionaryKey
        if Key.self == String.self {
            codingKey = { BinaryDictionaryKey(stringValue: $0 as! String) }
        } else if Key.self == Int.self {
            codingKey = { BinaryDictionaryKey(intValue: $0 as! Int) }
        } else if Key.self is any CodingKeyRepresentable.Type {
            codingKey = { BinaryDictionaryKey(($0 as! any CodingKeyRepresentable).codingKey) }
        } else {
            // What the standard library writes for other keys: key, value, key, value, …
            var container = BinaryUnkeyedEncoder(state: state, storage: slot.openUnkeyed(), codingPath: path)
            for (key, value) in try sortedByEncoding(Array(self), \.key) {
                try container.encode(key)
                try container.encode(value)
            }
            return
        }
        var entries = map { (key: codingKey($0.key), value: $0.value) }
        entries.sort { BinaryDictionaryKey.precedes($0.key, $1.key) }
        var container = BinaryKeyedEncoder<BinaryDictionaryKey>(state: state, body: slot.openKeyed(), codingPath: path)
        for entry in entries { try container.encode(entry.value, forKey: entry.key) }
    }
}

extension Set: BinaryUnorderedEncodable where Element: Encodable {
    func encodeCanonically(state: EncodingState, slot: EncodingSlot, path: [any CodingKey]) throws {
        var container = BinaryUnkeyedEncoder(state: state, storage: slot.openUnkeyed(), codingPath: path)
        for element in try sortedByEncoding(Array(self), { $0 }) { try container.encode(element) }
    }
}
