import Foundation
import ShoalCore
import SwiftProtobuf

// The generated messages under the names the rest of Shoal uses.
public typealias WireEnvelope = Shoal_Wire_V1_Envelope
public typealias WireContact = Shoal_Wire_V1_Contact
public typealias ClientRequest = Shoal_Wire_V1_ClientRequest
public typealias ClientReply = Shoal_Wire_V1_ClientReply

/// The wire format (`Protos/shoal/wire/v1/shoal.proto`): one message is one ZeroMQ multipart
/// message, its first frame an `Envelope`, then the raw bytes of the values it carries, each cut
/// into chunks of at most `chunkBytes`, one frame a chunk.
public enum Wire {
    /// The protocol version this peer speaks (`WireVersion.CURRENT`).
    public static let version = UInt32(Shoal_Wire_V1_WireVersion.current.rawValue)
    /// Nesting the decoder accepts: the schema nests at most 7 deep (an envelope, work, a record
    /// create, its spec, its calls, a body, a registered task); anything deeper is junk.
    public static let depthLimit = 16
    /// Default largest frame of a payload: big enough that a frame's own cost vanishes, small
    /// enough that a 64 MiB value does not sit in one buffer of every layer.
    public static let defaultChunkBytes = 4 << 20
}

/// What one message says.
public enum WireBody: Sendable {
    /// One peer to another, with the address-book entries of the peers it names (membership only).
    case peer(PeerMessage, contacts: [WireContact])
    case request(ClientRequest)
    case reply(ClientReply)
}

/// The bytes of one value as they arrived: the frames it came in (no copy is made to join them).
public struct WirePayload: Sendable, Hashable {
    public var chunks: [Data]
    public init(chunks: [Data]) { self.chunks = chunks }
    public init(_ bytes: Data) { chunks = bytes.isEmpty ? [] : [bytes] }
    public init(_ bytes: [UInt8]) { self.init(Data(bytes)) }
    /// The bytes of `bytes` with no copy: the frames point into the array's storage, which they
    /// keep alive (an array is immutable once shared, so its storage stays where it is). What a
    /// peer sends a large value with: the only copies are the kernel's (and CURVE's).
    public init(sharing bytes: [UInt8]) {
        guard bytes.count >= 4_096 else {
            self.init(bytes)
            return
        }
        let base = bytes.withUnsafeBufferPointer { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        self.init(Data(bytesNoCopy: base, count: bytes.count, deallocator: .custom { _, _ in withExtendedLifetime(bytes) {} }))
    }

    public var count: Int { chunks.reduce(0) { $0 + $1.count } }

    /// The bytes in one buffer (a copy only when there are several chunks).
    public var data: Data {
        if chunks.count == 1 { return chunks[0] }
        var d = Data(capacity: count)
        for c in chunks { d.append(c) }
        return d
    }

    /// The bytes in one array: one copy of each chunk. (Into fresh memory: on this project's
    /// machines the page faults of a new 64 MiB buffer cost as much as the copy. Asking for
    /// transparent huge pages made it 4x faster when the kernel had them free and 4x slower when
    /// it had to compact memory first, so it is not done.)
    public var bytes: [UInt8] {
        let n = count
        return [UInt8](unsafeUninitializedCapacity: n) { buffer, initialized in
            guard let base = buffer.baseAddress.map(UnsafeMutableRawPointer.init) else { return }
            var at = 0
            for c in chunks {
                c.withUnsafeBytes { raw in
                    if let from = raw.baseAddress { base.advanced(by: at).copyMemory(from: from, byteCount: raw.count) }
                }
                at += c.count
            }
            initialized = n
        }
    }
}

/// A decoded message: what it says and the values' bytes after it.
public struct WireMessage: Sendable {
    public var body: WireBody
    public var payloads: [WirePayload]
    public var version: UInt32
    /// The sending peer (`Envelope.sender`; zero from a client).
    public var sender: PeerID
    public init(body: WireBody, payloads: [WirePayload] = [], sender: PeerID = PeerID(raw: 0), version: UInt32 = Wire.version) {
        self.body = body
        self.payloads = payloads
        self.sender = sender
        self.version = version
    }
}

/// Why a message was refused. A peer drops it and counts it; nothing traps.
public enum WireError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No frame at all.
    case empty
    /// The sender speaks another protocol version.
    case version(UInt32)
    /// The header is not a protobuf envelope (or nests deeper than `Wire.depthLimit`).
    case malformed(String)
    /// The payload frames do not match what the header lists.
    case payloads(String)
    /// A field is out of its range or a required part is missing.
    case invalid(String)

    public var description: String {
        switch self {
        case .empty: "an empty message"
        case .version(let v): "wire version \(v), but this peer speaks version \(Wire.version)"
        case .malformed(let why): "a malformed header: \(why)"
        case .payloads(let why): "payload frames that do not match the header: \(why)"
        case .invalid(let why): "an invalid field: \(why)"
        }
    }
}

/// Bounds of what a decoder accepts (beyond the transport's own frame and message limits).
public struct WireLimits: Sendable, Hashable {
    /// Values one message may carry.
    public var maxPayloads: Int = 65_536
    /// Bytes of one value.
    public var maxPayloadBytes: UInt64 = 1 << 32
    public init() {}
}

extension Wire {
    /// The frames of `message`: the envelope, then each payload in chunks of at most `chunkBytes`
    /// (slices of the payload's own buffers: no byte is copied).
    public static func encode(_ message: WireMessage, chunkBytes: Int = defaultChunkBytes) -> [Data] {
        var envelope = header(of: message)
        let chunk = max(1, chunkBytes)
        var frames: [Data] = [Data()]
        for payload in message.payloads {
            var meta = Shoal_Wire_V1_Payload()
            var chunks: UInt32 = 0
            for c in payload.chunks where !c.isEmpty {
                var start = c.startIndex
                while start < c.endIndex {
                    let end = c.index(start, offsetBy: chunk, limitedBy: c.endIndex) ?? c.endIndex
                    frames.append(c[start..<end])
                    chunks += 1
                    start = end
                }
            }
            meta.bytes = UInt64(payload.count)
            meta.chunks = chunks
            envelope.payloads.append(meta)
        }
        // A message built in memory always serializes (no required fields in proto3).
        frames[0] = (try? envelope.serializedData()) ?? Data()
        return frames
    }

    /// The envelope of `message` without its payloads' list (what `encode` serializes first).
    public static func header(of message: WireMessage) -> WireEnvelope {
        var envelope = WireEnvelope()
        envelope.version = message.version
        envelope.sender = message.sender.raw
        switch message.body {
        case .peer(let m, let contacts): WireMapping.put(m, contacts: contacts, into: &envelope)
        case .request(let r): envelope.request = r
        case .reply(let r): envelope.reply = r
        }
        return envelope
    }

    /// The message in `frames`, or why it is refused. Never traps on any input.
    public static func decode(_ frames: [Data], limits: WireLimits = WireLimits()) throws(WireError) -> WireMessage {
        guard let header = frames.first else { throw .empty }
        var options = BinaryDecodingOptions()
        options.messageDepthLimit = depthLimit
        let envelope: WireEnvelope
        do {
            envelope = try WireEnvelope(serializedBytes: header, options: options)
        } catch {
            throw .malformed(String(describing: error))
        }
        guard envelope.version == version else { throw .version(envelope.version) }
        let payloads = try splitPayloads(envelope.payloads, frames: frames.dropFirst(), limits: limits)
        let body: WireBody
        switch envelope.body {
        case .membership(let m):
            body = .peer(.membership(try WireMapping.membership(m)), contacts: m.contacts)
        case .steal(let m): body = .peer(.steal(try WireMapping.steal(m)), contacts: [])
        case .work(let m): body = .peer(.work(try WireMapping.work(m)), contacts: [])
        case .placement(let m): body = .peer(.placement(try WireMapping.placement(m)), contacts: [])
        case .request(let r): body = .request(r)
        case .reply(let r): body = .reply(r)
        case nil: throw .invalid("the envelope says nothing (no body)")
        }
        return WireMessage(body: body, payloads: payloads, sender: PeerID(raw: envelope.sender), version: envelope.version)
    }

    static func splitPayloads(
        _ metas: [Shoal_Wire_V1_Payload], frames: ArraySlice<Data>, limits: WireLimits
    ) throws(WireError) -> [WirePayload] {
        guard metas.count <= limits.maxPayloads else {
            throw .payloads("\(metas.count) payloads, more than \(limits.maxPayloads)")
        }
        var next = frames.startIndex
        var out: [WirePayload] = []
        out.reserveCapacity(metas.count)
        for (k, meta) in metas.enumerated() {
            guard meta.bytes <= limits.maxPayloadBytes else {
                throw .payloads("payload \(k) claims \(meta.bytes) bytes, more than \(limits.maxPayloadBytes)")
            }
            guard Int(meta.chunks) <= frames.endIndex - next else {
                throw .payloads("payload \(k) claims \(meta.chunks) frames; \(frames.endIndex - next) are left")
            }
            let chunks = Array(frames[next..<next + Int(meta.chunks)])
            next += Int(meta.chunks)
            var total: UInt64 = 0
            for c in chunks {
                guard !c.isEmpty else { throw .payloads("payload \(k) has an empty frame") }
                total += UInt64(c.count)
            }
            guard total == meta.bytes else { throw .payloads("payload \(k) claims \(meta.bytes) bytes; its frames hold \(total)") }
            out.append(WirePayload(chunks: chunks))
        }
        guard next == frames.endIndex else {
            throw .payloads("\(frames.endIndex - next) frames after the payloads the header lists")
        }
        return out
    }
}
