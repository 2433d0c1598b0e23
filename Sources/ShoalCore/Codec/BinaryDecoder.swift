/// Decodes `Decodable` values from Shoal's binary value encoding (layout: ``BinaryCodec``,
/// `docs/value-encoding.md`).
///
/// Safe on untrusted bytes: every length and count is checked against the bytes that remain and
/// against ``BinaryDecodingLimits`` before anything is allocated, nesting is bounded, and every
/// problem is a thrown ``BinaryDecodingError`` (a type's own `init(from:)` may also throw its
/// `DecodingError`), never a trap. Keyed values are found by key name (through the message's key
/// table), so fields may be read in any order, unknown keys are ignored, and a missing key is
/// absent for `decodeIfPresent` and an error for `decode`.
public struct BinaryDecoder: Sendable {
    /// Bounds enforced while decoding.
    public var limits: BinaryDecodingLimits

    public init(limits: BinaryDecodingLimits = .default) { self.limits = limits }

    /// The value of type `type` encoded in `bytes` (all of them: trailing bytes are an error).
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        let state = DecodingState(bytes: bytes, limits: limits)
        let p = try state.readHeader()
        let end = bytes.count
        let cursor = DecodingCursor(position: p, end: end)
        let top = try state.presenceSlot(cursor: cursor, at: p, path: [])
        let value = try state.decodeValue(T.self, slot: top, path: [], depth: 0)
        guard cursor.position == end else {
            throw state.error(.malformed, cursor.position, [], "\(end - cursor.position) bytes after the value")
        }
        return value
    }
}

/// Read position shared by the values of one region (an unkeyed container's elements, one keyed
/// entry, the top level).
final class DecodingCursor {
    var position: Int
    let end: Int
    init(position: Int, end: Int) {
        self.position = position
        self.end = end
    }
}

/// Where one value starts, whether its slot says nil, and whether the value must fill the
/// region exactly (a keyed entry, whose length is known).
struct DecodingSlot {
    let cursor: DecodingCursor
    let start: Int
    let isNil: Bool
    let exact: Bool
}

/// One entry of a keyed container: its key's table index and its value's bytes.
struct KeyedEntry {
    let key: Int
    let start: Int
    let end: Int
}

/// A keyed container's entries, with a lookup that is O(1) when fields are read in the order
/// they were written (the common case) and a hash index for large containers (dictionaries).
final class KeyedRegion {
    let entries: [KeyedEntry]
    private var next = 0
    private var index: [Int: Int]?

    init(entries: [KeyedEntry]) { self.entries = entries }

    func find(_ key: Int) -> KeyedEntry? {
        if next < entries.count && entries[next].key == key {
            next += 1
            return entries[next - 1]
        }
        let found: Int?
        if entries.count <= 16 {
            found = entries.firstIndex { $0.key == key }
        } else {
            if index == nil {
                var map: [Int: Int] = [:]
                map.reserveCapacity(entries.count)
                for (i, e) in entries.enumerated() { map[e.key] = i }
                index = map
            }
            found = index?[key]
        }
        guard let i = found else { return nil }
        next = i + 1
        return entries[i]
    }
}

/// The input, the key table and the bounds-checked readers: the one reader of the layout, used
/// by the decoder and by ``BinaryStructure`` (which reads without the Swift type).
final class DecodingState {
    let bytes: [UInt8]
    let limits: BinaryDecodingLimits
    var keys: [String] = []
    var keyIndices: [String: Int] = [:]

    init(bytes: [UInt8], limits: BinaryDecodingLimits) {
        self.bytes = bytes
        self.limits = limits
    }

    func error(_ kind: BinaryDecodingError.Kind, _ offset: Int, _ path: [any CodingKey], _ message: String)
        -> BinaryDecodingError
    {
        BinaryDecodingError(
            kind: kind, offset: offset, codingPath: path.map(\.stringValue),
            message: message)
    }

    func readFixed<I: FixedWidthInteger>(
        _ type: I.Type, at p: inout Int, end: Int, path: @autoclosure () -> [any CodingKey]
    )
        throws -> I
    {
        let size = MemoryLayout<I>.size
        guard end - p >= size else {
            throw error(.truncated, p, path(), "\(end - p) bytes left, \(I.self) needs \(size)")
        }
        let v = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: p, as: I.self) }
        p += size
        return I(littleEndian: v)
    }

    func readVarint(at p: inout Int, end: Int, path: @autoclosure () -> [any CodingKey]) throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        let start = p
        while true {
            guard p < end else { throw error(.truncated, p, path(), "the bytes end inside a varint") }
            let b = bytes[p]
            p += 1
            if shift == 63 && b > 1 {
                throw error(.malformed, start, path(), "varint longer than 64 bits")
            }
            value |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return value }
            shift += 7
        }
    }

    /// A byte count that must fit in `end - p` (checked before anything is allocated).
    func readLength(at p: inout Int, end: Int, path: @autoclosure () -> [any CodingKey]) throws -> Int {
        let at = p
        let n = try readVarint(at: &p, end: end, path: path())
        guard n <= UInt64(end - p) else {
            throw error(.truncated, at, path(), "length \(n) but \(end - p) bytes left")
        }
        return Int(n)
    }

    /// A count bounded by `limit`.
    func readCount(at p: inout Int, end: Int, limit: Int, what: String, path: @autoclosure () -> [any CodingKey])
        throws -> Int
    {
        let at = p
        let n = try readVarint(at: &p, end: end, path: path())
        guard n <= UInt64(limit) else {
            throw error(.limitExceeded, at, path(), "\(n) \(what)s, the limit is \(limit)")
        }
        return Int(n)
    }

    func readString(at p: inout Int, end: Int, path: @autoclosure () -> [any CodingKey]) throws -> String {
        let at = p
        let n = try readLength(at: &p, end: end, path: path())
        guard n <= limits.maxStringBytes else {
            throw error(.limitExceeded, at, path(), "string of \(n) bytes, the limit is \(limits.maxStringBytes)")
        }
        guard let s = String(validating: bytes[p..<(p + n)], as: UTF8.self) else {
            throw error(.malformed, at, path(), "string is not valid UTF-8")
        }
        p += n
        return s
    }

    /// Reads the message's header, the version byte and the key table (into ``keys`` and
    /// ``keyIndices``), and returns the offset of the top-level slot.
    func readHeader() throws -> Int {
        var p = 0
        let end = bytes.count
        let version = try readFixed(UInt8.self, at: &p, end: end, path: [])
        guard version == BinaryCodec.version else {
            throw error(.malformed, 0, [], "format version \(version), expected \(BinaryCodec.version)")
        }
        let at = p
        let keyCount = try readCount(at: &p, end: end, limit: limits.maxKeyCount, what: "key", path: [])
        // Each name takes at least its length byte.
        guard keyCount <= end - p else {
            throw error(.truncated, at, [], "\(keyCount) key names, \(end - p) bytes left")
        }
        keys.reserveCapacity(keyCount)
        for i in 0..<keyCount {
            let at = p
            let name = try readString(at: &p, end: end, path: [])
            guard keyIndices.updateValue(i, forKey: name) == nil else {
                throw error(.malformed, at, [], "key name '\(name)' twice in the key table")
            }
            keys.append(name)
        }
        return p
    }

    /// A presence byte at `at`: 0 nil, 1 a value follows.
    func presenceSlot(cursor: DecodingCursor, at: Int, path: @autoclosure () -> [any CodingKey]) throws -> DecodingSlot
    {
        var p = at
        let b = try readFixed(UInt8.self, at: &p, end: cursor.end, path: path())
        guard b <= 1 else { throw error(.malformed, at, path(), "presence byte \(b), expected 0 or 1") }
        cursor.position = p
        return DecodingSlot(cursor: cursor, start: p, isNil: b == 0, exact: false)
    }

    // MARK: Primitives from a slot

    private func begin(_ slot: DecodingSlot, _ what: Any.Type, _ path: () -> [any CodingKey]) throws -> Int {
        guard !slot.isNil else { throw error(.malformed, slot.start, path(), "found nil, expected \(what)") }
        return slot.start
    }

    private func finish(_ slot: DecodingSlot, _ p: Int, _ what: Any.Type, _ path: () -> [any CodingKey]) throws {
        if slot.exact && p != slot.cursor.end {
            throw error(
                .malformed, slot.start, path(),
                "\(slot.cursor.end - slot.start)-byte value, \(what) takes \(p - slot.start)")
        }
        slot.cursor.position = p
    }

    func fixed<I: FixedWidthInteger>(_ type: I.Type, _ slot: DecodingSlot, _ path: @autoclosure () -> [any CodingKey])
        throws -> I
    {
        var p = try begin(slot, I.self, path)
        let v = try readFixed(I.self, at: &p, end: slot.cursor.end, path: path())
        try finish(slot, p, I.self, path)
        return v
    }

    func bool(_ slot: DecodingSlot, _ path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        let at = slot.start
        let b = try fixed(UInt8.self, slot, path())
        guard b <= 1 else { throw error(.malformed, at, path(), "Bool byte \(b), expected 0 or 1") }
        return b == 1
    }

    func string(_ slot: DecodingSlot, _ path: @autoclosure () -> [any CodingKey]) throws -> String {
        var p = try begin(slot, String.self, path)
        let s = try readString(at: &p, end: slot.cursor.end, path: path())
        try finish(slot, p, String.self, path)
        return s
    }

    func int(_ slot: DecodingSlot, _ path: @autoclosure () -> [any CodingKey]) throws -> Int {
        let v = try fixed(Int64.self, slot, path())
        guard let i = Int(exactly: v) else { throw error(.malformed, slot.start, path(), "\(v) does not fit Int") }
        return i
    }

    func uint(_ slot: DecodingSlot, _ path: @autoclosure () -> [any CodingKey]) throws -> UInt {
        let v = try fixed(UInt64.self, slot, path())
        guard let i = UInt(exactly: v) else { throw error(.malformed, slot.start, path(), "\(v) does not fit UInt") }
        return i
    }

    // MARK: Values

    /// Reads a `T` from `slot`: Optionals from the slot's nil, fast-path arrays and
    /// ``BinaryContiguous`` types from their raw bytes, anything else by its `init(from:)`.
    func decodeValue<T: Decodable>(_ type: T.Type, slot: DecodingSlot, path: [any CodingKey], depth: Int) throws -> T {
        if let optional = T.self as? any BinaryOptionalDecodable.Type {
            return try optional.decodeBinary(state: self, slot: slot, path: path, depth: depth) as! T
        }
        if let contiguous = T.self as? any BinaryContiguous.Type {
            return try decodeContiguous(contiguous, slot: slot, path: path) as! T
        }
        if let bytesType = T.self as? any BinaryBytes.Type {
            return try decodeBytes(bytesType, slot: slot, path: path, depth: depth) as! T
        }
        return try T(from: BinaryValueDecoder(state: self, slot: slot, codingPath: path, depth: depth))
    }

    private func decodeContiguous<C: BinaryContiguous>(_ type: C.Type, slot: DecodingSlot, path: [any CodingKey])
        throws -> C
    {
        let scalars = try scalarArray(C.Scalar.self, slot, path)
        return try C(binaryScalars: scalars)
    }

    /// A ``BinaryBytes`` value: the unkeyed container of one `UInt8` a byte that its `Codable`
    /// form reads, its bytes handed over in one buffer. It accepts what the per-byte path would:
    /// the container's header as ``unkeyed(_:path:depth:)`` checks it, no nil element (a nil
    /// `UInt8` is an error), and bytes after the elements inside the container are skipped.
    private func decodeBytes<B: BinaryBytes>(_ type: B.Type, slot: DecodingSlot, path: [any CodingKey], depth: Int)
        throws -> B
    {
        let container = try unkeyed(slot, path: path, depth: depth)
        let count = container.total
        if let first = container.nils.first {
            throw error(
                .malformed, container.cursor.position, path + [BinaryIndexKey(first)], "found nil, expected UInt8")
        }
        let from = container.cursor.position
        guard count <= container.cursor.end - from else {
            throw error(.truncated, from, path, "\(count) bytes but \(container.cursor.end - from) left")
        }
        return try bytes.withUnsafeBytes {
            try B(binaryBytes: UnsafeRawBufferPointer(rebasing: $0[from..<from + count]))
        }
    }

    /// A fast-path array: count, then raw little-endian elements.
    func scalarArray<S: BinaryScalar>(_ type: S.Type, _ slot: DecodingSlot, _ path: [any CodingKey]) throws -> [S] {
        var p = try begin(slot, [S].self, { path })
        let end = slot.cursor.end
        let at = p
        let count = try readCount(at: &p, end: end, limit: limits.maxElementCount, what: "element", path: path)
        let width = MemoryLayout<S.Bits>.size
        guard count <= (end - p) / width else {
            throw error(.truncated, at, path, "\(count) × \(width)-byte elements but \(end - p) bytes left")
        }
        let byteCount = count * width
        let values: [S]
        if S.copiesAsBytes {
            let from = p
            values = [S](unsafeUninitializedCapacity: count) { buffer, initialized in
                if let destination = buffer.baseAddress {
                    bytes.withUnsafeBytes { source in
                        UnsafeMutableRawPointer(destination).copyMemory(
                            from: source.baseAddress! + from, byteCount: byteCount)
                    }
                }
                initialized = count
            }
        } else {
            var out: [S] = []
            out.reserveCapacity(count)
            for i in 0..<count {
                let bits = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: p + i * width, as: S.Bits.self) }
                guard let v = S(binaryBits: S.Bits(littleEndian: bits)) else {
                    throw error(.malformed, p + i * width, path, "element \(i) does not fit \(S.self)")
                }
                out.append(v)
            }
            values = out
        }
        p += byteCount
        try finish(slot, p, [S].self, { path })
        return values
    }

    /// Opens the keyed container stored in `slot`.
    func keyedRegion(_ slot: DecodingSlot, path: [any CodingKey], depth: Int) throws -> KeyedRegion {
        guard !slot.isNil else { throw error(.malformed, slot.start, path, "found nil, expected a keyed container") }
        guard depth < limits.maxDepth else {
            throw error(.limitExceeded, slot.start, path, "nesting deeper than \(limits.maxDepth)")
        }
        var p = slot.start
        let length = try readLength(at: &p, end: slot.cursor.end, path: path)
        let end = p + length
        let entries = try keyedEntries(p..<end, path: path)
        if slot.exact && end != slot.cursor.end {
            throw error(.malformed, end, path, "\(slot.cursor.end - end) bytes after a keyed container")
        }
        slot.cursor.position = end
        return KeyedRegion(entries: entries)
    }

    /// The entries of a keyed container whose entries fill `body` (after its byte count): each
    /// names a key of the table, at most once, and its value's bytes lie inside `body`.
    func keyedEntries(_ body: Range<Int>, path: [any CodingKey]) throws -> [KeyedEntry] {
        var p = body.lowerBound
        let end = body.upperBound
        var entries: [KeyedEntry] = []
        while p < end {
            let at = p
            let key = try readVarint(at: &p, end: end, path: path)
            guard key < UInt64(keys.count) else {
                throw error(.malformed, at, path, "key index \(key) outside the key table of \(keys.count)")
            }
            let n = try readLength(at: &p, end: end, path: path)
            guard entries.count < limits.maxElementCount else {
                throw error(.limitExceeded, at, path, "more than \(limits.maxElementCount) entries")
            }
            entries.append(KeyedEntry(key: Int(key), start: p, end: p + n))
            p += n
        }
        try checkDistinct(entries, path: path)
        return entries
    }

    /// A key written twice in one container could mean different things to different readers:
    /// refuse it.
    private func checkDistinct(_ entries: [KeyedEntry], path: [any CodingKey]) throws {
        guard entries.count > 1 else { return }
        var seen = Set<Int>()
        seen.reserveCapacity(entries.count)
        for e in entries where !seen.insert(e.key).inserted {
            throw error(.malformed, e.start, path, "key '\(keys[e.key])' twice in one container")
        }
    }

    /// Opens the unkeyed container stored in `slot`.
    func unkeyed(_ slot: DecodingSlot, path: [any CodingKey], depth: Int) throws -> BinaryUnkeyedDecoder {
        guard !slot.isNil else { throw error(.malformed, slot.start, path, "found nil, expected an unkeyed container") }
        guard depth < limits.maxDepth else {
            throw error(.limitExceeded, slot.start, path, "nesting deeper than \(limits.maxDepth)")
        }
        var p = slot.start
        let length = try readLength(at: &p, end: slot.cursor.end, path: path)
        let end = p + length
        let (count, nils) = try unkeyedHeader(at: &p, end: end, path: path)
        if slot.exact && end != slot.cursor.end {
            throw error(.malformed, end, path, "\(slot.cursor.end - end) bytes after an unkeyed container")
        }
        slot.cursor.position = end
        return BinaryUnkeyedDecoder(
            state: self, cursor: DecodingCursor(position: p, end: end), total: count, nils: nils, codingPath: path,
            depth: depth + 1)
    }
}

extension DecodingState {
    /// An unkeyed container's header after its byte count: `count nilCount nilIndex*`, read
    /// from `p` (left at the first element) up to `end`, the container's end. Every element
    /// takes at least one byte (a present value) or its nil index does, so a count larger than
    /// the bytes left is refused before anyone reserves room for it.
    func unkeyedHeader(at p: inout Int, end: Int, path: [any CodingKey]) throws -> (count: Int, nils: [Int]) {
        let countAt = p
        let count = try readCount(at: &p, end: end, limit: limits.maxElementCount, what: "element", path: path)
        guard count <= end - p else {
            throw error(.truncated, countAt, path, "\(count) elements, \(end - p) bytes left")
        }
        let at = p
        let nilCount = try readCount(at: &p, end: end, limit: count, what: "nil element", path: path)
        guard nilCount <= end - p else {
            throw error(.truncated, at, path, "\(nilCount) nil indices, \(end - p) bytes left")
        }
        var nils: [Int] = []
        nils.reserveCapacity(nilCount)
        for _ in 0..<nilCount {
            let at = p
            let i = try readVarint(at: &p, end: end, path: path)
            guard i < UInt64(count), nils.last.map({ UInt64($0) < i }) ?? true else {
                throw error(.malformed, at, path, "nil index \(i) not ascending below \(count)")
            }
            nils.append(Int(i))
        }
        return (count, nils)
    }
}

/// `Optional`, seen by the decoder (the mirror of `BinaryOptionalEncodable`).
protocol BinaryOptionalDecodable {
    static func decodeBinary(state: DecodingState, slot: DecodingSlot, path: [any CodingKey], depth: Int) throws
        -> Self
}

extension Optional: BinaryOptionalDecodable where Wrapped: Decodable {
    static func decodeBinary(state: DecodingState, slot: DecodingSlot, path: [any CodingKey], depth: Int) throws
        -> Wrapped?
    {
        if slot.isNil { return nil }
        if Wrapped.self is any BinaryOptionalDecodable.Type {
            // A presence byte is one level of nesting: a type that wraps itself in optionals
            // through a single value container would otherwise recurse once per input byte.
            guard depth < state.limits.maxDepth else {
                throw state.error(.limitExceeded, slot.start, path, "nesting deeper than \(state.limits.maxDepth)")
            }
            let inner = try state.presenceSlot(cursor: slot.cursor, at: slot.start, path: path)
            return .some(try state.decodeValue(Wrapped.self, slot: inner, path: path, depth: depth + 1))
        }
        return .some(try state.decodeValue(Wrapped.self, slot: slot, path: path, depth: depth))
    }
}

/// The `Decoder` handed to a value's `init(from:)`, bound to one slot.
struct BinaryValueDecoder: Decoder {
    let state: DecodingState
    let slot: DecodingSlot
    let codingPath: [any CodingKey]
    let depth: Int
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        let region = try state.keyedRegion(slot, path: codingPath, depth: depth)
        return KeyedDecodingContainer(
            BinaryKeyedDecoder<Key>(state: state, region: region, codingPath: codingPath, depth: depth + 1))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try state.unkeyed(slot, path: codingPath, depth: depth)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        BinarySingleValueDecoder(state: state, slot: slot, codingPath: codingPath, depth: depth)
    }
}

struct BinaryKeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let state: DecodingState
    let region: KeyedRegion
    let codingPath: [any CodingKey]
    let depth: Int

    var allKeys: [Key] { region.entries.compactMap { Key(stringValue: state.keys[$0.key]) } }

    private func entry(_ key: Key) -> KeyedEntry? {
        guard let i = state.keyIndices[key.stringValue] else { return nil }
        return region.find(i)
    }

    private func slot(_ e: KeyedEntry) -> DecodingSlot {
        DecodingSlot(
            cursor: DecodingCursor(position: e.start, end: e.end), start: e.start, isNil: e.start == e.end, exact: true)
    }

    private func slot(_ key: Key) throws -> DecodingSlot {
        guard let e = entry(key) else {
            let at = region.entries.first?.start ?? 0
            throw state.error(.malformed, at, codingPath + [key], "no value for key '\(key.stringValue)'")
        }
        return slot(e)
    }

    func contains(_ key: Key) -> Bool { entry(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool { try slot(key).isNil }
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try state.bool(slot(key), codingPath + [key]) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try state.string(slot(key), codingPath + [key])
    }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        Double(bitPattern: try state.fixed(UInt64.self, slot(key), codingPath + [key]))
    }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        Float(bitPattern: try state.fixed(UInt32.self, slot(key), codingPath + [key]))
    }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try state.int(slot(key), codingPath + [key]) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try state.uint(slot(key), codingPath + [key]) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 {
        try state.fixed(type, slot(key), codingPath + [key])
    }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 {
        try state.fixed(type, slot(key), codingPath + [key])
    }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try state.decodeValue(T.self, slot: slot(key), path: codingPath + [key], depth: depth)
    }

    /// Absent key: nil. A nil entry: nil, unless `T` is itself Optional, which then gets
    /// `.some(nil)` — what `encodeIfPresent(Optional<T>.some(nil))` wrote.
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let e = entry(key) else { return nil }
        let s = slot(e)
        if s.isNil && !(T.self is any BinaryOptionalDecodable.Type) { return nil }
        return try state.decodeValue(T.self, slot: s, path: codingPath + [key], depth: depth)
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        try BinaryValueDecoder(state: state, slot: slot(key), codingPath: codingPath + [key], depth: depth)
            .container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try state.unkeyed(slot(key), path: codingPath + [key], depth: depth)
    }

    func superDecoder() throws -> any Decoder {
        let key = BinarySuperKey()
        guard let i = state.keyIndices[key.stringValue], let e = region.find(i) else {
            throw state.error(.malformed, region.entries.first?.start ?? 0, codingPath, "no value for key 'super'")
        }
        return BinaryValueDecoder(state: state, slot: slot(e), codingPath: codingPath + [key], depth: depth)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        BinaryValueDecoder(state: state, slot: try slot(key), codingPath: codingPath + [key], depth: depth)
    }
}

struct BinaryUnkeyedDecoder: UnkeyedDecodingContainer {
    let state: DecodingState
    let cursor: DecodingCursor
    let total: Int
    let nils: [Int]
    let codingPath: [any CodingKey]
    let depth: Int
    private(set) var currentIndex = 0
    private var nilCursor = 0

    init(state: DecodingState, cursor: DecodingCursor, total: Int, nils: [Int], codingPath: [any CodingKey], depth: Int)
    {
        self.state = state
        self.cursor = cursor
        self.total = total
        self.nils = nils
        self.codingPath = codingPath
        self.depth = depth
    }

    var count: Int? { total }
    var isAtEnd: Bool { currentIndex >= total }

    private var path: [any CodingKey] { codingPath + [BinaryIndexKey(currentIndex)] }
    private var nextIsNil: Bool { nilCursor < nils.count && nils[nilCursor] == currentIndex }

    private mutating func nextSlot() throws -> DecodingSlot {
        guard !isAtEnd else {
            throw state.error(.malformed, cursor.position, path, "unkeyed container has only \(total) elements")
        }
        let isNil = nextIsNil
        if isNil { nilCursor += 1 }
        currentIndex += 1
        return DecodingSlot(cursor: cursor, start: cursor.position, isNil: isNil, exact: false)
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd else {
            throw state.error(.malformed, cursor.position, path, "unkeyed container has only \(total) elements")
        }
        guard nextIsNil else { return false }
        nilCursor += 1
        currentIndex += 1
        return true
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool {
        let p = path
        return try state.bool(nextSlot(), p)
    }
    mutating func decode(_ type: String.Type) throws -> String {
        let p = path
        return try state.string(nextSlot(), p)
    }
    mutating func decode(_ type: Double.Type) throws -> Double {
        let p = path
        return Double(bitPattern: try state.fixed(UInt64.self, nextSlot(), p))
    }
    mutating func decode(_ type: Float.Type) throws -> Float {
        let p = path
        return Float(bitPattern: try state.fixed(UInt32.self, nextSlot(), p))
    }
    mutating func decode(_ type: Int.Type) throws -> Int {
        let p = path
        return try state.int(nextSlot(), p)
    }
    mutating func decode(_ type: UInt.Type) throws -> UInt {
        let p = path
        return try state.uint(nextSlot(), p)
    }
    private mutating func fixed<I: FixedWidthInteger>(_ type: I.Type) throws -> I {
        let p = path
        return try state.fixed(type, nextSlot(), p)
    }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try fixed(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try fixed(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try fixed(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try fixed(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try fixed(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try fixed(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try fixed(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try fixed(type) }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let p = path
        return try state.decodeValue(T.self, slot: nextSlot(), path: p, depth: depth)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws
        -> KeyedDecodingContainer<NestedKey>
    {
        let p = path
        return try BinaryValueDecoder(state: state, slot: nextSlot(), codingPath: p, depth: depth).container(
            keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let p = path
        return try state.unkeyed(nextSlot(), path: p, depth: depth)
    }

    mutating func superDecoder() throws -> any Decoder {
        let p = path
        return BinaryValueDecoder(state: state, slot: try nextSlot(), codingPath: p, depth: depth)
    }
}

struct BinarySingleValueDecoder: SingleValueDecodingContainer {
    let state: DecodingState
    let slot: DecodingSlot
    let codingPath: [any CodingKey]
    let depth: Int

    func decodeNil() -> Bool { slot.isNil }
    func decode(_ type: Bool.Type) throws -> Bool { try state.bool(slot, codingPath) }
    func decode(_ type: String.Type) throws -> String { try state.string(slot, codingPath) }
    func decode(_ type: Double.Type) throws -> Double {
        Double(bitPattern: try state.fixed(UInt64.self, slot, codingPath))
    }
    func decode(_ type: Float.Type) throws -> Float {
        Float(bitPattern: try state.fixed(UInt32.self, slot, codingPath))
    }
    func decode(_ type: Int.Type) throws -> Int { try state.int(slot, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try state.uint(slot, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try state.fixed(type, slot, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try state.fixed(type, slot, codingPath) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try state.decodeValue(T.self, slot: slot, path: codingPath, depth: depth)
    }
}
