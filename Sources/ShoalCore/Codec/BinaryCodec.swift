/// Shoal's binary value encoding: the compact form in which `Codable` values travel and persist
/// (JSON is only for people). `BinaryEncoder` writes it, `BinaryDecoder` reads it; the full
/// description with examples is `docs/value-encoding.md`.
///
/// Layout (version 1):
///
/// ```
/// message   = version:u8(=1)  keyCount:varint  key*keyCount  slot
/// key       = byteCount:varint  utf8            (every distinct key name, first use first)
/// slot      = presence:u8 (0 nil, 1 value)  value?          (the top-level slot)
/// value     = bool:u8(0|1) | intN/uintN little-endian fixed width | float32/float64 LE bits
///           | string = byteCount:varint utf8
///           | keyed  = byteCount:varint  entry*               (entries fill byteCount)
///           | unkeyed= byteCount:varint  count:varint  nilCount:varint  nilIndex:varint*nilCount
///                      element*                               (nil elements take no bytes)
///           | scalarArray = count:varint  raw little-endian elements   (fast path)
/// entry     = keyIndex:varint  valueByteCount:varint  value  (valueByteCount 0 means nil)
/// ```
///
/// `Int`/`UInt` are always 8 bytes. Varints are unsigned LEB128 (at most 10 bytes). An
/// `Optional` takes no byte of its own where the slot can say "nil" (a keyed entry of length 0,
/// an index in the unkeyed container's nil list); where it cannot (the top level, or an Optional
/// directly inside an Optional) it is a presence byte. So `Int??.some(nil)` round-trips.
public enum BinaryCodec {
    /// The format version written in the first byte.
    public static let version: UInt8 = 1

    /// Whether `encoder` is Shoal's binary encoder, so a type may pick its binary-friendly form
    /// (e.g. `[Double]`, which takes the raw fast path, instead of base64 text).
    public static func isBinary(_ encoder: any Encoder) -> Bool { encoder is BinaryValueEncoder }

    /// Whether `decoder` is Shoal's binary decoder (see ``isBinary(_:)-(Encoder)``).
    public static func isBinary(_ decoder: any Decoder) -> Bool { decoder is BinaryValueDecoder }

    /// True on little-endian hosts, where fast-path arrays are copied with one `memcpy`.
    static let hostIsLittleEndian = 1.littleEndian == 1
}

/// Why a binary value could not be decoded. Untrusted bytes never trap the decoder: every
/// problem ends here, with the byte offset and the coding path where it was found.
public struct BinaryDecodingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of problem.
    public enum Kind: String, Sendable, Equatable {
        /// The bytes end before the value does (a length or count points past the end).
        case truncated
        /// The bytes are not a valid encoding of the requested type.
        case malformed
        /// A count, a length or the nesting depth exceeds ``BinaryDecodingLimits``.
        case limitExceeded
    }

    /// What kind of problem.
    public let kind: Kind
    /// Offset in the input of the byte where the problem was found.
    public let offset: Int
    /// The coding path, e.g. `["matrices", "3", "data"]`.
    public let codingPath: [String]
    /// What was wrong, in words.
    public let message: String

    public init(kind: Kind, offset: Int, codingPath: [String], message: String) {
        self.kind = kind
        self.offset = offset
        self.codingPath = codingPath
        self.message = message
    }

    public var description: String {
        let path = codingPath.isEmpty ? "top level" : codingPath.joined(separator: ".")
        return "binary value \(kind.rawValue) at byte \(offset) (\(path)): \(message)"
    }
}

/// Bounds the decoder enforces before it allocates or recurses, so hostile bytes cost at most
/// these. A length is also always checked against the bytes that remain.
public struct BinaryDecodingLimits: Sendable, Equatable {
    /// Deepest nesting of containers (keyed or unkeyed). Default 64: far beyond real records,
    /// and well inside a thread's stack.
    public var maxDepth: Int
    /// Largest element count of one unkeyed container or fast-path array, and largest number of
    /// entries in one keyed container. Default 1 << 28 (256 Mi, 2 GiB of `Double`).
    public var maxElementCount: Int
    /// Largest number of distinct key names in the message's key table. Default 1 << 20.
    public var maxKeyCount: Int
    /// Largest UTF-8 byte count of one string or key name. Default 1 << 30 (1 GiB).
    public var maxStringBytes: Int

    public init(
        maxDepth: Int = 64, maxElementCount: Int = 1 << 28, maxKeyCount: Int = 1 << 20, maxStringBytes: Int = 1 << 30
    ) {
        self.maxDepth = maxDepth
        self.maxElementCount = maxElementCount
        self.maxKeyCount = maxKeyCount
        self.maxStringBytes = maxStringBytes
    }

    /// The defaults stated on each property.
    public static let `default` = BinaryDecodingLimits()
}

/// A fixed-width scalar that arrays of take the fast path: one count, then the elements' raw
/// little-endian bytes. The set is closed to the standard types listed below (`Double`,
/// `Float`, `Int`, `Int64`, `Int32`, `Int16`, `Int8`, `UInt`, `UInt64`, `UInt32`, `UInt16`,
/// `UInt8`); do not conform other types, use ``BinaryContiguous`` instead.
public protocol BinaryScalar: Codable, Sendable {
    /// The unsigned integer with the same width as the encoding.
    associatedtype Bits: FixedWidthInteger & UnsignedInteger
    /// The value as the bits written (little-endian on the wire).
    var binaryBits: Bits { get }
    /// The value from its bits, or nil if the host type cannot hold it (`Int` on 32-bit hosts).
    init?(binaryBits: Bits)
}

extension BinaryScalar {
    /// Whether `[Self]`'s memory is exactly its little-endian encoding on this host, so one
    /// `memcpy` encodes or decodes it.
    static var copiesAsBytes: Bool {
        BinaryCodec.hostIsLittleEndian && MemoryLayout<Self>.size == MemoryLayout<Bits>.size
            && MemoryLayout<Self>.stride == MemoryLayout<Bits>.stride
    }
}

extension Double: BinaryScalar {
    public var binaryBits: UInt64 { bitPattern }
    public init?(binaryBits: UInt64) { self.init(bitPattern: binaryBits) }
}
extension Float: BinaryScalar {
    public var binaryBits: UInt32 { bitPattern }
    public init?(binaryBits: UInt32) { self.init(bitPattern: binaryBits) }
}
extension Int: BinaryScalar {
    public var binaryBits: UInt64 { UInt64(bitPattern: Int64(self)) }
    public init?(binaryBits: UInt64) { self.init(exactly: Int64(bitPattern: binaryBits)) }
}
extension UInt: BinaryScalar {
    public var binaryBits: UInt64 { UInt64(self) }
    public init?(binaryBits: UInt64) { self.init(exactly: binaryBits) }
}
extension Int64: BinaryScalar {
    public var binaryBits: UInt64 { UInt64(bitPattern: self) }
    public init?(binaryBits: UInt64) { self.init(bitPattern: binaryBits) }
}
extension Int32: BinaryScalar {
    public var binaryBits: UInt32 { UInt32(bitPattern: self) }
    public init?(binaryBits: UInt32) { self.init(bitPattern: binaryBits) }
}
extension Int16: BinaryScalar {
    public var binaryBits: UInt16 { UInt16(bitPattern: self) }
    public init?(binaryBits: UInt16) { self.init(bitPattern: binaryBits) }
}
extension Int8: BinaryScalar {
    public var binaryBits: UInt8 { UInt8(bitPattern: self) }
    public init?(binaryBits: UInt8) { self.init(bitPattern: binaryBits) }
}
extension UInt64: BinaryScalar {
    public var binaryBits: UInt64 { self }
    public init?(binaryBits: UInt64) { self = binaryBits }
}
extension UInt32: BinaryScalar {
    public var binaryBits: UInt32 { self }
    public init?(binaryBits: UInt32) { self = binaryBits }
}
extension UInt16: BinaryScalar {
    public var binaryBits: UInt16 { self }
    public init?(binaryBits: UInt16) { self = binaryBits }
}
extension UInt8: BinaryScalar {
    public var binaryBits: UInt8 { self }
    public init?(binaryBits: UInt8) { self = binaryBits }
}

/// A type whose whole binary form is one fast-path array of scalars (a count, then raw
/// little-endian bytes). Its `Codable` conformance still serves JSON and other formats; the
/// binary coder detects this protocol and uses ``binaryScalars`` instead.
public protocol BinaryContiguous {
    /// The scalar the contents are made of.
    associatedtype Scalar: BinaryScalar
    /// The contents to write, in order.
    var binaryScalars: [Scalar] { get }
    /// Rebuilds a value from the scalars ``binaryScalars`` gave; throws if they are not valid.
    init(binaryScalars: [Scalar]) throws
}

/// A byte container whose `Codable` form is an unkeyed container of its bytes, one `UInt8` each
/// (as Foundation's `Data` encodes itself). The binary coder writes and reads exactly those bytes
/// (`byteCount count nilCount=0 byte*`), but with one `memcpy` each way instead of one call a
/// byte; so a value encodes identically whether or not its type conforms, and decoding accepts
/// what the per-byte path accepts. It exists for byte containers that ShoalCore cannot name: the
/// `Shoal` module conforms `Data`.
public protocol BinaryBytes {
    /// Calls `body` with the contents.
    func withBinaryBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R
    /// A value holding a copy of `bytes`; throws if they are not a valid value.
    init(binaryBytes bytes: UnsafeRawBufferPointer) throws
}

/// Arrays of scalars: the built-in fast path.
extension Array: BinaryContiguous where Element: BinaryScalar {
    public var binaryScalars: [Element] { self }
    public init(binaryScalars: [Element]) { self = binaryScalars }
}

/// Unsigned LEB128: seven bits a byte, low first, high bit set on all but the last byte.
enum Varint {
    /// Bytes `value` takes.
    static func size(_ value: UInt64) -> Int {
        var v = value
        var n = 1
        while v >= 0x80 {
            v >>= 7
            n += 1
        }
        return n
    }

    /// Appends `value` to `bytes`.
    static func append(_ value: UInt64, to bytes: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Writes `value` at `p`, returning the bytes written.
    static func write(_ value: UInt64, to p: UnsafeMutableRawPointer) -> Int {
        var v = value
        var n = 0
        while v >= 0x80 {
            p.storeBytes(of: UInt8(truncatingIfNeeded: v) | 0x80, toByteOffset: n, as: UInt8.self)
            v >>= 7
            n += 1
        }
        p.storeBytes(of: UInt8(v), toByteOffset: n, as: UInt8.self)
        return n + 1
    }
}
