import ShoalCore

/// How a program's values cross peers: as bytes. `[UInt8]` (a workflow file's data, a registered
/// task's bytes) travels as it is; any other `Codable` value in its compact binary encoding
/// (`BinaryEncoder`); a value that is neither cannot leave the peer that made it.
///
/// The receiving side decodes lazily, as the type the task reads it as (`EncodedValue` in a task
/// context's box), so the bytes of a value read by no one are never decoded.
public enum PeerValues {
    /// The bytes of `value`.
    public static func encode(_ value: Any) throws -> [UInt8] {
        switch value {
        case let bytes as [UInt8]: return bytes
        case let file as FileValue: return try file.bytes()
        case let encodable as any Encodable: return try BinaryEncoder().encode(encodable)
        default: throw Unencodable(type: "\(type(of: value))")
        }
    }

    /// `bytes` as a `T`.
    public static func decode<T>(_ bytes: [UInt8], as type: T.Type) throws -> T {
        if let raw = bytes as? T { return raw }
        guard let decodable = T.self as? any Decodable.Type else { throw Unencodable(type: "\(T.self)") }
        return try decode(decodable, bytes) as! T
    }

    private static func decode<D: Decodable>(_ type: D.Type, _ bytes: [UInt8]) throws -> D {
        try BinaryDecoder().decode(D.self, from: bytes)
    }

    /// A value that cannot cross peers.
    public struct Unencodable: Error, CustomStringConvertible {
        public var type: String
        public var description: String {
            "a value of type \(type) cannot leave its peer: make it Codable (or bytes) to use it on a cluster"
        }
    }
}

/// A value received from another peer as bytes, decoded when a task first reads it as a type.
struct EncodedValue: Sendable {
    let bytes: [UInt8]
}
