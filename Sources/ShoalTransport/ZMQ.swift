import CZMQ
import Foundation

// A thin binding of the libzmq calls Shoal uses. Sockets are not thread-safe, so `ZMQSocket` is a
// non-Sendable class: the compiler refuses to hand one to another thread, and the IO thread that
// made it is the only one that uses and closes it. A `zmq_msg_t` is never copied by value (libzmq
// stores small messages inline): each lives on the heap from init to close.

/// A failed libzmq call: the call's name and `zmq_errno()`'s text.
public struct ZMQError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let code: Int32
    public var description: String { "\(call): \(String(cString: zmq_strerror(code))) (errno \(code))" }
    init(_ call: String, code: Int32 = zmq_errno()) {
        self.call = call
        self.code = code
    }
}

/// The text of a NUL-terminated C buffer (up to its first NUL), as libzmq fills them.
func cString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A libzmq context. Contexts are thread-safe; `terminate` is called once, after every socket
/// made in it is closed.
final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    init() throws(ZMQError) {
        guard let h = zmq_ctx_new() else { throw ZMQError("zmq_ctx_new") }
        handle = h
        // Never block `zmq_ctx_term` on unsent messages (every socket also sets LINGER 0).
        zmq_ctx_set(h, ZMQ_BLOCKY, 0)
    }

    func terminate() {
        while zmq_ctx_term(handle) != 0 && zmq_errno() == EINTR {}
    }
}

/// What a non-blocking send did.
enum SendOutcome: Equatable {
    case sent
    /// The peer's high-water mark is reached, or (with `ZMQ_IMMEDIATE`) no connection is up.
    case wouldBlock
    /// A ROUTER with `ZMQ_ROUTER_MANDATORY` has no connection with that routing id.
    case unroutable
    case failed(Int32)
}

/// One received multipart message: its frames, and the ZAP user id its connection was
/// authenticated with (nil without a ZAP handler's answer, as in trusted-network mode).
struct ReceivedMessage {
    var frames: [Data]
    var userID: String?
}

final class ZMQSocket {
    let handle: UnsafeMutableRawPointer
    private var closed = false

    init(_ context: ZMQContext, type: Int32) throws(ZMQError) {
        guard let h = zmq_socket(context.handle, type) else { throw ZMQError("zmq_socket") }
        handle = h
        try set(ZMQ_LINGER, Int32(0))
    }

    deinit { close() }

    func close() {
        if !closed { zmq_close(handle) }
        closed = true
    }

    func set(_ option: Int32, _ value: Int32) throws(ZMQError) {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else {
            throw ZMQError("zmq_setsockopt(\(option))")
        }
    }

    func set(_ option: Int32, _ value: Int64) throws(ZMQError) {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else {
            throw ZMQError("zmq_setsockopt(\(option))")
        }
    }

    func set(_ option: Int32, bytes: [UInt8]) throws(ZMQError) {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard rc == 0 else { throw ZMQError("zmq_setsockopt(\(option))") }
    }

    func set(_ option: Int32, string: String) throws(ZMQError) {
        try set(option, bytes: Array(string.utf8))
    }

    func bind(_ endpoint: String) throws(ZMQError) {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError("zmq_bind(\(endpoint))") }
    }

    func connect(_ endpoint: String) throws(ZMQError) {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError("zmq_connect(\(endpoint))") }
    }

    /// The endpoint the last bind resolved to (the port a `tcp://127.0.0.1:0` bind chose).
    func lastEndpoint() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        var size = buffer.count
        guard zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) == 0 else { return "" }
        return cString(buffer)
    }

    /// Sends `frames` as one multipart message without blocking. libzmq queues a multipart
    /// message whole or not at all: only the first frame can meet the high-water mark.
    func send(_ frames: [Data]) -> SendOutcome {
        precondition(!frames.isEmpty, "a message has at least one frame")
        for (i, frame) in frames.enumerated() {
            let flags = ZMQ_DONTWAIT | (i + 1 < frames.count ? ZMQ_SNDMORE : 0)
            let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            defer { msg.deallocate() }
            Self.initMessage(msg, with: frame)
            if zmq_msg_send(msg, handle, flags) < 0 {
                let code = zmq_errno()
                zmq_msg_close(msg)
                if i > 0 { return .failed(code) }  // libzmq never refuses a later part
                if code == EAGAIN { return .wouldBlock }
                if code == EHOSTUNREACH { return .unroutable }
                return .failed(code)
            }
        }
        return .sent
    }

    /// Frames at least this large are handed to libzmq without a copy of ours: the message
    /// points into the `Data`'s heap storage, which a retained box keeps alive until libzmq
    /// frees the message (after sending, or at once under CURVE, which encrypts into a copy of
    /// its own). Smaller frames are copied: the copy costs less than the box, and a `Data` of
    /// up to 14 bytes stores its bytes inline, with no stable address.
    static let zeroCopyBytes = 4_096

    private final class Keep {
        let data: Data
        init(_ data: Data) { self.data = data }
    }

    private static func initMessage(_ msg: UnsafeMutablePointer<zmq_msg_t>, with frame: Data) {
        if frame.count >= zeroCopyBytes {
            let keep = Keep(frame)
            let hint = Unmanaged.passRetained(keep).toOpaque()
            keep.data.withUnsafeBytes { raw in
                _ = zmq_msg_init_data(
                    msg, UnsafeMutableRawPointer(mutating: raw.baseAddress), raw.count,
                    { _, hint in Unmanaged<Keep>.fromOpaque(hint!).release() }, hint)
            }
        } else {
            zmq_msg_init_size(msg, frame.count)
            if !frame.isEmpty {
                frame.withUnsafeBytes { raw in
                    zmq_msg_data(msg).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
                }
            }
        }
    }

    /// Receives one whole multipart message if one is waiting, without blocking; stops reading
    /// frames past `maxFrames` (the rest are read and dropped, and `tooManyFrames` is set).
    /// Large frames become `Data` over libzmq's own buffer (no copy); small ones are copied.
    func receive(maxFrames: Int) -> (message: ReceivedMessage, tooManyFrames: Bool)? {
        var frames: [Data] = []
        var userID: String?
        var tooMany = false
        var first = true
        while true {
            let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            zmq_msg_init(msg)
            // Only the first frame may be absent: a later part of a message arrives with it.
            if zmq_msg_recv(msg, handle, first ? ZMQ_DONTWAIT : 0) < 0 {
                zmq_msg_close(msg)
                msg.deallocate()
                // Nothing waiting (EAGAIN), or the context is ending (ETERM, the only way a
                // later part fails): either way there is no message to hand on.
                return nil
            }
            first = false
            // A ROUTER's routing-id frame is made by libzmq and carries no metadata: the user id
            // is on the frames that came over the connection.
            if userID == nil, let id = zmq_msg_gets(msg, "User-Id") {
                userID = String(cString: id)
            }
            let more = zmq_msg_more(msg) != 0
            if frames.count < maxFrames {
                frames.append(Self.takeFrame(msg))
            } else {
                tooMany = true
                zmq_msg_close(msg)
                msg.deallocate()
            }
            if !more { return (ReceivedMessage(frames: frames, userID: userID), tooMany) }
        }
    }

    /// The frame's bytes as `Data`; closes and frees `msg` now (small frames) or when the `Data`
    /// is released (large ones).
    private static func takeFrame(_ msg: UnsafeMutablePointer<zmq_msg_t>) -> Data {
        let size = zmq_msg_size(msg)
        if size < zeroCopyBytes {
            let data = size == 0 ? Data() : Data(bytes: zmq_msg_data(msg), count: size)
            zmq_msg_close(msg)
            msg.deallocate()
            return data
        }
        let owner = MessageOwner(msg)
        return Data(
            bytesNoCopy: zmq_msg_data(msg), count: size,
            deallocator: .custom { _, _ in owner.free() })
    }

    /// Owns one received `zmq_msg_t` until the `Data` over its bytes is released (on any thread:
    /// closing a received message touches only the message).
    private final class MessageOwner: @unchecked Sendable {
        let msg: UnsafeMutablePointer<zmq_msg_t>
        init(_ msg: UnsafeMutablePointer<zmq_msg_t>) { self.msg = msg }
        func free() {
            zmq_msg_close(msg)
            msg.deallocate()
        }
    }
}
