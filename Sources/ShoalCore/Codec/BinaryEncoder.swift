/// Encodes `Encodable` values in Shoal's binary value encoding (layout: ``BinaryCodec``,
/// `docs/value-encoding.md`).
///
/// The encoder first builds a small tree of byte runs (so a container may be written to in any
/// order, as `Codable` allows), then sizes it and writes it into one exactly sized buffer. Arrays
/// of ``BinaryScalar`` and ``BinaryContiguous`` values are kept by reference until that final
/// write, which copies them with one `memcpy` on little-endian hosts. Encoding is synchronous,
/// pure and deterministic: one value, one encoding, in every process (`Dictionary` and `Set` are
/// written in a canonical order, not their per-process iteration order; see
/// `BinaryUnorderedEncodable`).
public struct BinaryEncoder: Sendable {
    public init() {}

    /// The binary form of `value`: the version byte, the key table, then the value.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let state = EncodingState()
        let top = Sink()
        try state.encodeValue(value, into: EncodingSlot(.presence, top), path: [])
        var header: [UInt8] = [BinaryCodec.version]
        Varint.append(UInt64(state.keys.count), to: &header)
        for key in state.keys {
            Varint.append(UInt64(key.utf8.count), to: &header)
            header.append(contentsOf: key.utf8)
        }
        let total = header.count + top.size
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            let base = UnsafeMutableRawPointer(buffer.baseAddress!)
            header.withUnsafeBytes { base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            var offset = header.count
            top.write(to: base, at: &offset)
            precondition(offset == total, "binary encoder wrote \(offset) bytes, sized \(total)")
            initialized = total
        }
    }
}

/// The key table and the one entry point that dispatches a value to its layout.
final class EncodingState {
    /// Key names in first-use order; entries refer to them by index.
    var keys: [String] = []
    private var keyIndices: [String: Int] = [:]

    /// The key table index of `key`'s name, adding it on first use.
    func index(of key: some CodingKey) -> Int {
        let name = key.stringValue
        if let i = keyIndices[name] { return i }
        keys.append(name)
        keyIndices[name] = keys.count - 1
        return keys.count - 1
    }

    /// Writes `value` into `slot`: Optionals as the slot's nil or their wrapped value, scalar
    /// arrays and ``BinaryContiguous`` values by the fast path, dictionaries and sets in their
    /// canonical order, anything else by its own `encode(to:)`.
    func encodeValue<T: Encodable>(_ value: T, into slot: EncodingSlot, path: [any CodingKey]) throws {
        if let optional = value as? any BinaryOptionalEncodable {
            try optional.encodeBinary(state: self, slot: slot, path: path)
        } else if let contiguous = value as? any BinaryContiguous {
            try encodeContiguous(contiguous, into: slot)
        } else if let bytes = value as? any BinaryBytes {
            try encodeBytes(bytes, into: slot)
        } else if let unordered = value as? any BinaryUnorderedEncodable {
            try unordered.encodeCanonically(state: self, slot: slot, path: path)
        } else {
            try value.encode(to: BinaryValueEncoder(state: self, slot: slot, codingPath: path))
            // A value that wrote nothing becomes an empty keyed container, so that every non-nil
            // value takes at least one byte (a keyed entry of length 0 means nil).
            if slot.isEmpty { _ = slot.openKeyed() }
        }
    }

    /// The unkeyed container of one `UInt8` a byte that the value's `Codable` form writes:
    /// `byteCount count 0`, then the bytes, copied when the message is written.
    private func encodeBytes<B: BinaryBytes>(_ value: B, into slot: EncodingSlot) throws {
        let sink = try slot.beginValue()
        let payload = BytesPayload(value: value)
        let count = UInt64(payload.byteCount)
        Varint.append(UInt64(Varint.size(count) + 1) + count, to: &sink.run)
        Varint.append(count, to: &sink.run)
        sink.run.append(0)
        sink.append(.raw(payload))
    }

    private func encodeContiguous<C: BinaryContiguous>(_ value: C, into slot: EncodingSlot) throws {
        let sink = try slot.beginValue()
        let scalars = value.binaryScalars
        Varint.append(UInt64(scalars.count), to: &sink.run)
        sink.append(.raw(ScalarPayload(values: scalars)))
    }
}

/// `Optional`, seen by the encoder: nil goes to the slot's own nil; a wrapped Optional gets a
/// presence byte so that `.some(nil)` stays distinct from `nil`.
protocol BinaryOptionalEncodable {
    func encodeBinary(state: EncodingState, slot: EncodingSlot, path: [any CodingKey]) throws
}

extension Optional: BinaryOptionalEncodable where Wrapped: Encodable {
    func encodeBinary(state: EncodingState, slot: EncodingSlot, path: [any CodingKey]) throws {
        switch self {
        case .none:
            try slot.writeNil()
        case .some(let wrapped):
            if Wrapped.self is any BinaryOptionalEncodable.Type {
                try state.encodeValue(wrapped, into: EncodingSlot(.presence, try slot.beginValue()), path: path)
            } else {
                try state.encodeValue(wrapped, into: slot, path: path)
            }
        }
    }
}

/// Bytes of a fast-path array, copied only when the message is written.
protocol RawPayload {
    var byteCount: Int { get }
    func copyBytes(to destination: UnsafeMutableRawPointer)
}

/// A ``BinaryBytes`` value, held (not copied) until the message is written.
struct BytesPayload<B: BinaryBytes>: RawPayload {
    let value: B
    let byteCount: Int

    init(value: B) {
        self.value = value
        byteCount = value.withBinaryBytes { $0.count }
    }

    func copyBytes(to destination: UnsafeMutableRawPointer) {
        value.withBinaryBytes { source in
            precondition(source.count == byteCount, "a BinaryBytes value changed its length while being encoded")
            if let base = source.baseAddress { destination.copyMemory(from: base, byteCount: byteCount) }
        }
    }
}

struct ScalarPayload<S: BinaryScalar>: RawPayload {
    let values: [S]

    var byteCount: Int { values.count * MemoryLayout<S.Bits>.size }

    func copyBytes(to destination: UnsafeMutableRawPointer) {
        if S.copiesAsBytes {
            values.withUnsafeBytes { source in
                if let base = source.baseAddress { destination.copyMemory(from: base, byteCount: source.count) }
            }
        } else {
            let width = MemoryLayout<S.Bits>.size
            for (i, v) in values.enumerated() {
                destination.storeBytes(of: v.binaryBits.littleEndian, toByteOffset: i * width, as: S.Bits.self)
            }
        }
    }
}

/// A byte sequence under construction: runs of bytes interleaved with child sinks (framed by
/// their length, or inline), unkeyed headers (known only once the container is complete) and
/// raw payloads. Sized and written once, after the whole value has been built.
final class Sink {
    enum Part {
        case bytes([UInt8])
        /// `varint(byteCount)` then the child.
        case framed(Sink)
        case inline(Sink)
        /// `count`, `nilCount`, the nil indices of an unkeyed container.
        case unkeyedHeader(UnkeyedStorage)
        case raw(any RawPayload)
    }

    var parts: [Part] = []
    /// Bytes after the last part.
    var run: [UInt8] = []
    private var cachedSize = -1

    var isEmpty: Bool { parts.isEmpty && run.isEmpty }

    func append(_ part: Part) {
        if !run.isEmpty {
            parts.append(.bytes(run))
            run = []
        }
        parts.append(part)
    }

    func appendLittleEndian<I: FixedWidthInteger>(_ value: I) {
        withUnsafeBytes(of: value.littleEndian) { run.append(contentsOf: $0) }
    }

    func appendString(_ s: String) {
        Varint.append(UInt64(s.utf8.count), to: &run)
        run.append(contentsOf: s.utf8)
    }

    /// Bytes this sink writes (computed once: call only when the value is complete).
    var size: Int {
        if cachedSize >= 0 { return cachedSize }
        var n = run.count
        for part in parts {
            switch part {
            case .bytes(let b): n += b.count
            case .framed(let child):
                let s = child.size
                n += Varint.size(UInt64(s)) + s
            case .inline(let child): n += child.size
            case .unkeyedHeader(let u): n += u.headerSize
            case .raw(let payload): n += payload.byteCount
            }
        }
        cachedSize = n
        return n
    }

    func write(to base: UnsafeMutableRawPointer, at offset: inout Int) {
        func copy(_ bytes: [UInt8]) {
            bytes.withUnsafeBytes { b in
                if let p = b.baseAddress { (base + offset).copyMemory(from: p, byteCount: b.count) }
            }
            offset += bytes.count
        }
        for part in parts {
            switch part {
            case .bytes(let b): copy(b)
            case .framed(let child):
                offset += Varint.write(UInt64(child.size), to: base + offset)
                child.write(to: base, at: &offset)
            case .inline(let child): child.write(to: base, at: &offset)
            case .unkeyedHeader(let u): copy(u.header)
            case .raw(let payload):
                payload.copyBytes(to: base + offset)
                offset += payload.byteCount
            }
        }
        copy(run)
    }
}

/// An unkeyed container's element count, nil indices and elements.
final class UnkeyedStorage {
    var count = 0
    var nils: [Int] = []
    let body = Sink()

    var header: [UInt8] {
        var h: [UInt8] = []
        Varint.append(UInt64(count), to: &h)
        Varint.append(UInt64(nils.count), to: &h)
        for i in nils { Varint.append(UInt64(i), to: &h) }
        return h
    }

    var headerSize: Int {
        nils.reduce(Varint.size(UInt64(count)) + Varint.size(UInt64(nils.count))) { $0 + Varint.size(UInt64($1)) }
    }
}

/// The place one value goes, and how that place says "nil".
final class EncodingSlot {
    enum Kind {
        /// A keyed entry's value: nil is an entry of length 0.
        case entry
        /// Element `index` of an unkeyed container: nil is listed in its header.
        case element(UnkeyedStorage, index: Int)
        /// Presence byte (0 nil, 1 then the value): the top level, and an Optional in an Optional.
        case presence
    }

    private enum State {
        case empty, wroteNil, wroteValue
        case keyed(Sink)
        case unkeyed(UnkeyedStorage)
    }

    let kind: Kind
    let sink: Sink
    private var state = State.empty

    init(_ kind: Kind, _ sink: Sink) {
        self.kind = kind
        self.sink = sink
    }

    var isEmpty: Bool {
        if case .empty = state { return true }
        return false
    }

    private func refuseSecondValue() -> EncodingError {
        EncodingError.invalidValue(
            (), EncodingError.Context(codingPath: [], debugDescription: "a single value container encoded twice"))
    }

    func writeNil() throws {
        guard isEmpty else { throw refuseSecondValue() }
        state = .wroteNil
        switch kind {
        case .entry: break
        case .element(let storage, let index): storage.nils.append(index)
        case .presence: sink.run.append(0)
        }
    }

    /// The sink the value's bytes go to (after the presence byte, where there is one).
    func beginValue() throws -> Sink {
        guard isEmpty else { throw refuseSecondValue() }
        state = .wroteValue
        if case .presence = kind { sink.run.append(1) }
        return sink
    }

    /// The keyed container's body for this slot; asking again returns the same one (a class
    /// and its superclass may share one container, as with JSONEncoder).
    func openKeyed() -> Sink {
        if case .keyed(let body) = state { return body }
        precondition(isEmpty, "binary encoder: a keyed container requested after another value in the same slot")
        let body = Sink()
        if case .presence = kind { sink.run.append(1) }
        sink.append(.framed(body))
        state = .keyed(body)
        return body
    }

    func openUnkeyed() -> UnkeyedStorage {
        if case .unkeyed(let storage) = state { return storage }
        precondition(isEmpty, "binary encoder: an unkeyed container requested after another value in the same slot")
        let storage = UnkeyedStorage()
        let frame = Sink()
        frame.append(.unkeyedHeader(storage))
        frame.append(.inline(storage.body))
        if case .presence = kind { sink.run.append(1) }
        sink.append(.framed(frame))
        state = .unkeyed(storage)
        return storage
    }
}

/// The `Encoder` handed to a value's `encode(to:)`, bound to one slot.
struct BinaryValueEncoder: Encoder {
    let state: EncodingState
    let slot: EncodingSlot
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(BinaryKeyedEncoder<Key>(state: state, body: slot.openKeyed(), codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        BinaryUnkeyedEncoder(state: state, storage: slot.openUnkeyed(), codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        BinarySingleValueEncoder(state: state, slot: slot, codingPath: codingPath)
    }
}

/// A key for an unkeyed container's element in coding paths.
struct BinaryIndexKey: CodingKey {
    let intValue: Int?
    var stringValue: String { "\(intValue ?? 0)" }
    init(_ index: Int) { intValue = index }
    init?(intValue: Int) { self.intValue = intValue }
    init?(stringValue: String) {
        guard let i = Int(stringValue) else { return nil }
        intValue = i
    }
}

/// The key `super` uses when none is given (as JSONEncoder).
struct BinarySuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }
    init() {}
    init?(intValue: Int) { nil }
    init?(stringValue: String) {
        guard stringValue == "super" else { return nil }
    }
}

struct BinaryKeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let state: EncodingState
    let body: Sink
    let codingPath: [any CodingKey]

    private func entryHeader(_ key: some CodingKey, byteCount: Int) {
        Varint.append(UInt64(state.index(of: key)), to: &body.run)
        Varint.append(UInt64(byteCount), to: &body.run)
    }

    private func fixed<I: FixedWidthInteger>(_ value: I, _ key: Key) {
        entryHeader(key, byteCount: MemoryLayout<I>.size)
        body.appendLittleEndian(value)
    }

    /// A slot for `key`'s value, framed by its length once known.
    private func entrySlot(_ key: some CodingKey) -> EncodingSlot {
        Varint.append(UInt64(state.index(of: key)), to: &body.run)
        let value = Sink()
        body.append(.framed(value))
        return EncodingSlot(.entry, value)
    }

    mutating func encodeNil(forKey key: Key) throws { entryHeader(key, byteCount: 0) }
    mutating func encode(_ value: Bool, forKey key: Key) throws {
        entryHeader(key, byteCount: 1)
        body.run.append(value ? 1 : 0)
    }
    mutating func encode(_ value: String, forKey key: Key) throws {
        let n = value.utf8.count
        entryHeader(key, byteCount: Varint.size(UInt64(n)) + n)
        body.appendString(value)
    }
    mutating func encode(_ value: Double, forKey key: Key) throws { fixed(value.bitPattern, key) }
    mutating func encode(_ value: Float, forKey key: Key) throws { fixed(value.bitPattern, key) }
    mutating func encode(_ value: Int, forKey key: Key) throws { fixed(Int64(value), key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { fixed(UInt64(value), key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { fixed(value, key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { fixed(value, key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try state.encodeValue(value, into: entrySlot(key), path: codingPath + [key])
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        KeyedEncodingContainer(
            BinaryKeyedEncoder<NestedKey>(
                state: state, body: entrySlot(key).openKeyed(), codingPath: codingPath + [key]))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        BinaryUnkeyedEncoder(state: state, storage: entrySlot(key).openUnkeyed(), codingPath: codingPath + [key])
    }

    mutating func superEncoder() -> any Encoder {
        BinaryValueEncoder(state: state, slot: entrySlot(BinarySuperKey()), codingPath: codingPath + [BinarySuperKey()])
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        BinaryValueEncoder(state: state, slot: entrySlot(key), codingPath: codingPath + [key])
    }
}

struct BinaryUnkeyedEncoder: UnkeyedEncodingContainer {
    let state: EncodingState
    let storage: UnkeyedStorage
    let codingPath: [any CodingKey]
    var count: Int { storage.count }

    private func fixed<I: FixedWidthInteger>(_ value: I) {
        storage.count += 1
        storage.body.appendLittleEndian(value)
    }

    private func nextSlot() -> EncodingSlot {
        let slot = EncodingSlot(.element(storage, index: storage.count), storage.body)
        storage.count += 1
        return slot
    }

    mutating func encodeNil() throws { try nextSlot().writeNil() }
    mutating func encode(_ value: Bool) throws {
        storage.count += 1
        storage.body.run.append(value ? 1 : 0)
    }
    mutating func encode(_ value: String) throws {
        storage.count += 1
        storage.body.appendString(value)
    }
    mutating func encode(_ value: Double) throws { fixed(value.bitPattern) }
    mutating func encode(_ value: Float) throws { fixed(value.bitPattern) }
    mutating func encode(_ value: Int) throws { fixed(Int64(value)) }
    mutating func encode(_ value: Int8) throws { fixed(value) }
    mutating func encode(_ value: Int16) throws { fixed(value) }
    mutating func encode(_ value: Int32) throws { fixed(value) }
    mutating func encode(_ value: Int64) throws { fixed(value) }
    mutating func encode(_ value: UInt) throws { fixed(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { fixed(value) }
    mutating func encode(_ value: UInt16) throws { fixed(value) }
    mutating func encode(_ value: UInt32) throws { fixed(value) }
    mutating func encode(_ value: UInt64) throws { fixed(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        let path = codingPath + [BinaryIndexKey(storage.count)]
        try state.encodeValue(value, into: nextSlot(), path: path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
        -> KeyedEncodingContainer<NestedKey>
    {
        let path = codingPath + [BinaryIndexKey(storage.count)]
        return KeyedEncodingContainer(
            BinaryKeyedEncoder<NestedKey>(state: state, body: nextSlot().openKeyed(), codingPath: path))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let path = codingPath + [BinaryIndexKey(storage.count)]
        return BinaryUnkeyedEncoder(state: state, storage: nextSlot().openUnkeyed(), codingPath: path)
    }

    mutating func superEncoder() -> any Encoder {
        let path = codingPath + [BinaryIndexKey(storage.count)]
        return BinaryValueEncoder(state: state, slot: nextSlot(), codingPath: path)
    }
}

struct BinarySingleValueEncoder: SingleValueEncodingContainer {
    let state: EncodingState
    let slot: EncodingSlot
    let codingPath: [any CodingKey]

    private func fixed<I: FixedWidthInteger>(_ value: I) throws { try slot.beginValue().appendLittleEndian(value) }

    mutating func encodeNil() throws { try slot.writeNil() }
    mutating func encode(_ value: Bool) throws { try slot.beginValue().run.append(value ? 1 : 0) }
    mutating func encode(_ value: String) throws { try slot.beginValue().appendString(value) }
    mutating func encode(_ value: Double) throws { try fixed(value.bitPattern) }
    mutating func encode(_ value: Float) throws { try fixed(value.bitPattern) }
    mutating func encode(_ value: Int) throws { try fixed(Int64(value)) }
    mutating func encode(_ value: Int8) throws { try fixed(value) }
    mutating func encode(_ value: Int16) throws { try fixed(value) }
    mutating func encode(_ value: Int32) throws { try fixed(value) }
    mutating func encode(_ value: Int64) throws { try fixed(value) }
    mutating func encode(_ value: UInt) throws { try fixed(UInt64(value)) }
    mutating func encode(_ value: UInt8) throws { try fixed(value) }
    mutating func encode(_ value: UInt16) throws { try fixed(value) }
    mutating func encode(_ value: UInt32) throws { try fixed(value) }
    mutating func encode(_ value: UInt64) throws { try fixed(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        guard slot.isEmpty else {
            throw EncodingError.invalidValue(
                value,
                EncodingError.Context(
                    codingPath: codingPath, debugDescription: "a single value container encoded twice"))
        }
        try state.encodeValue(value, into: slot, path: codingPath)
    }
}
