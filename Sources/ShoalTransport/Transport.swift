import CZMQ
import Foundation
import Synchronization

/// How a transport authenticates.
public enum TransportSecurity: Sendable {
    /// CurveZMQ on every socket (the default everywhere): this side's key pair, and the
    /// allow-lists for connections to its port. `peers` may do everything; `clients` only what
    /// the peer lets clients do (the transport tags each message with the role; the peer decides).
    /// A key in neither list never completes a handshake. A transport that does not listen
    /// (a client) needs no lists.
    case curve(CurveKeyPair, peers: Set<CurveKey> = [], clients: Set<CurveKey> = [])
    /// Trusted network: no encryption, no authentication; every connection is a peer. For speed
    /// on a network nobody else can reach. Never the default.
    case none

    public var keyPair: CurveKeyPair? {
        if case .curve(let pair, _, _) = self { return pair }
        return nil
    }
}

/// Another peer's port, as this side connects to it: its address and, under CURVE, the public
/// key it must prove (a server that cannot is never sent a byte).
public struct Remote: Hashable, Sendable, CustomStringConvertible {
    public let endpoint: String
    public let serverKey: CurveKey?
    public init(endpoint: String, serverKey: CurveKey?) {
        self.endpoint = endpoint
        self.serverKey = serverKey
    }
    public var description: String { endpoint }
}

/// What an authenticated connection to this port may be.
public enum SenderRole: String, Sendable {
    case peer
    case client
}

/// Where a received message came from.
public enum Origin: Hashable, Sendable {
    /// A connection to this side's port: the routing id to reply to (`Transport.reply`), the key
    /// it authenticated with (nil in trusted-network mode) and the allow-list it is on.
    case connection(routingID: Data, key: CurveKey?, role: SenderRole)
    /// A reply that came back on this side's connection to `remote` (a client's replies).
    case remote(Remote)
}

/// One received multipart message.
public struct Inbound: Sendable {
    public let origin: Origin
    public let frames: [Data]
}

/// What the IO thread hands to its consumer, in batches.
public enum TransportEvent: Sendable {
    case message(Inbound)
    /// A connection to `remote` completed its handshake (under CURVE: both keys proven).
    case connected(Remote)
    /// `remote` refused this side's key: it is on neither of its allow-lists.
    case keyRefused(Remote)
    /// A handshake with `remote` failed for another reason (a wrong server key, a port that
    /// does not speak CURVE); libzmq retries, and this is reported on every failure.
    case handshakeFailed(Remote, reason: String)
    case disconnected(Remote)
}

/// Bounds and timing of one transport. Every queue is bounded; see each field.
public struct TransportSettings: Sendable {
    /// The largest frame accepted (`ZMQ_MAXMSGSIZE`): a connection sending a larger one is cut.
    /// Large values travel as several frames of at most this size.
    public var maxFrameBytes: Int64 = 64 << 20
    /// Frames kept of one received message; a message with more is dropped and counted.
    public var maxFramesPerMessage = 4_096
    /// Messages libzmq queues per connection each way (`ZMQ_SNDHWM`, `ZMQ_RCVHWM`).
    public var highWaterMark: Int32 = 1_000
    /// Messages and bytes callers may have queued for the IO thread; `send` refuses past them.
    public var maxQueuedSends = 65_536
    public var maxQueuedSendBytes = 1 << 30
    /// Messages kept for one remote while its connection is down or full; past it the oldest is
    /// dropped and counted (the protocol above re-sends what matters).
    public var maxPendingPerRemote = 4_096
    /// Events waiting for the consumer; past it the IO thread stops reading sockets until the
    /// consumer catches up (back-pressure through libzmq's queues to TCP).
    public var maxInboundEvents = 65_536
    /// Messages read from one socket per wake-up, so one busy connection cannot starve the rest.
    public var maxReceiveBatch = 1_024
    /// Remotes with an open connection; past it the least recently used one is closed.
    public var maxRemotes = 4_096
    /// `ZMQ_HANDSHAKE_IVL`: a connection that has not finished its handshake by then is cut.
    public var handshakeTimeoutMs: Int32 = 5_000
    /// `ZMQ_HEARTBEAT_IVL` and `ZMQ_HEARTBEAT_TIMEOUT`: a silent TCP link is found dead and cut.
    public var heartbeatIntervalMs: Int32 = 1_000
    public var heartbeatTimeoutMs: Int32 = 5_000
    /// `ZMQ_RECONNECT_IVL` and `ZMQ_RECONNECT_IVL_MAX`.
    public var reconnectIntervalMs: Int32 = 100
    public var reconnectMaxMs: Int32 = 5_000

    public init() {}
}

/// Counters of one transport, read with `Transport.stats`.
public struct TransportStats: Sendable, Equatable {
    public var messagesReceived: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var messagesSent: UInt64 = 0
    public var bytesSent: UInt64 = 0
    /// Handshakes refused by this side's ZAP handler: a key on neither allow-list.
    public var rejectedKeys: UInt64 = 0
    /// Connections to this port whose handshake failed otherwise (random bytes, a plain
    /// connection to a CURVE port, a wrong server key).
    public var failedHandshakes: UInt64 = 0
    /// Messages dropped because their routing id does not belong to the key they were
    /// authenticated with (or carried no authenticated key under CURVE).
    public var refusedIdentity: UInt64 = 0
    /// Messages dropped for having more than `maxFramesPerMessage` frames.
    public var tooManyFrames: UInt64 = 0
    /// Connections accepted on this port, and those of them that completed their handshake
    /// (under CURVE: proved an allowed key). The difference is what was cut before: random
    /// bytes, a plain connection to a CURVE port, a refused key, a stalled handshake.
    public var connectionsAccepted: UInt64 = 0
    public var handshakesSucceeded: UInt64 = 0
    public var unauthenticatedConnections: UInt64 { connectionsAccepted &- handshakesSucceeded }
    /// Connections to this port that ended (closed, cut for an oversized frame, timed out).
    public var disconnects: UInt64 = 0
    /// `send` and `reply` calls refused because the queue to the IO thread was full.
    public var sendsRefused: UInt64 = 0
    /// Messages queued but never sent: a remote's pending list overflowed, a client gone.
    public var sendsDropped: UInt64 = 0
}

/// Why a transport could not start.
public struct TransportError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public var description: String { message }
}

/// A peer's (or a client's) ZeroMQ endpoint: one ROUTER bound to its port for everything it
/// receives, one DEALER per remote it sends to, and a ZAP handler, all owned by one IO thread
/// running `zmq_poll` with an eventfd to wake it. Callers queue sends from any thread and take
/// received messages in batches with `receive()`; no libzmq call runs on Swift's cooperative pool.
///
/// Routing ids are tied to keys: a DEALER's routing id is `0x01`, its 32-byte public key and
/// (for a client) 8 random bytes, and the ROUTER drops every message whose routing id does not
/// carry the key its connection authenticated with, so no connection can take another's replies
/// (libzmq does not authenticate routing ids). `ZMQ_ROUTER_HANDOVER` lets a restarted peer take
/// its own id back at once.
public final class Transport: Sendable {
    /// The bound endpoint, with the port the kernel chose for `tcp://HOST:0`; nil for a client.
    public let endpoint: String?
    public let security: TransportSecurity
    public let settings: TransportSettings
    /// This side's routing id on its connections.
    public let routingID: Data

    private let core: TransportCore
    private let finished = DispatchSemaphore(value: 0)
    private let closedOnce = Mutex(false)

    /// Starts the IO thread; binds `listen` (a `tcp://HOST:PORT`, `:0` for any free port) if
    /// given, after the ZAP handler. Throws if the bind fails (a port in use, a bad address).
    public init(listen: String?, security: TransportSecurity, settings: TransportSettings = TransportSettings())
        throws(TransportError)
    {
        self.security = security
        self.settings = settings
        var id = Data([0x01])
        if let pair = security.keyPair {
            id.append(contentsOf: pair.publicKey.bytes)
        } else {
            id.append(contentsOf: (0..<32).map { _ in UInt8.random(in: 0...255) })
        }
        if listen == nil { id.append(contentsOf: (0..<8).map { _ in UInt8.random(in: 0...255) }) }
        routingID = id
        let core = try TransportCore(settings: settings)
        self.core = core
        let context: ZMQContext
        do { context = try ZMQContext() } catch { throw TransportError(message: "\(error)") }

        let started = DispatchSemaphore(value: 0)
        let startResult = Mutex<Result<String?, TransportError>?>(nil)
        let thread = Thread { [finished, id] in
            IOLoop.blockSignals()
            do throws(TransportError) {
                let loop = try IOLoop(
                    context: context, listen: listen, security: security, settings: settings, routingID: id,
                    core: core)
                startResult.withLock { $0 = .success(loop.boundEndpoint) }
                started.signal()
                loop.run()
                loop.closeAll()
            } catch {
                startResult.withLock { $0 = .failure(error) }
                started.signal()
            }
            context.terminate()
            finished.signal()
        }
        thread.name = "shoal-io"
        thread.start()
        started.wait()
        switch startResult.withLock({ $0 })! {
        case .failure(let e):
            finished.wait()
            throw e
        case .success(let bound):
            endpoint = bound
        }
    }

    deinit { shutdown() }

    /// Queues `frames` as one message to `remote`'s port, connecting on first use. Returns false
    /// (and counts it) if the queue to the IO thread is full or the transport is closed.
    @discardableResult
    public func send(_ frames: [Data], to remote: Remote) -> Bool {
        core.enqueue(.send(remote, frames), bytes: frames.reduce(0) { $0 + $1.count })
    }

    /// Queues a reply to a connection to this port (a client), by the routing id its message
    /// came with. A reply to a connection that is gone is dropped and counted.
    @discardableResult
    public func reply(_ frames: [Data], to routingID: Data) -> Bool {
        core.enqueue(.reply(routingID, frames), bytes: frames.reduce(0) { $0 + $1.count })
    }

    /// Closes this side's connection to `remote` and drops what is pending for it (the peer
    /// calls this when membership declares the remote dead).
    public func disconnect(_ remote: Remote) {
        _ = core.enqueue(.disconnect(remote), bytes: 0)
    }

    /// The next batch of events, waiting until there is one; an empty batch once the transport
    /// is closed. One consumer at a time.
    public func receive() async -> [TransportEvent] {
        if let taken = core.takeIfReady() { return taken }
        let events = await withCheckedContinuation { (c: CheckedContinuation<[TransportEvent], Never>) in
            core.takeOrWait(c)
        }
        core.resumeReading()
        return events
    }

    /// The events waiting now, without waiting.
    public func poll() -> [TransportEvent] { core.takeIfReady() ?? [] }

    public var stats: TransportStats { core.counters.withLock { $0 } }

    /// Stops the IO thread (closing every socket, with nothing lingering) and wakes a waiting
    /// `receive` with an empty batch. Safe to call more than once.
    public func shutdown() {
        let first = closedOnce.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else { return }
        core.commands.withLock { $0.stopping = true }
        core.wake()
        finished.wait()
        core.close()
    }
}

/// What a transport and its IO thread share: the queue of commands to the thread, the queue of
/// events from it, the counters and the eventfd that wakes it. The thread holds this, not the
/// transport, so releasing the transport shuts the thread down.
final class TransportCore: Sendable {
    let settings: TransportSettings
    let commands = Mutex(CommandQueue())
    let inbound = Mutex(InboundQueue())
    let counters = Mutex(TransportStats())
    let wakeFD: Int32

    init(settings: TransportSettings) throws(TransportError) {
        self.settings = settings
        let fd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard fd >= 0 else { throw TransportError(message: "eventfd: \(String(cString: strerror(errno)))") }
        wakeFD = fd
    }

    deinit { Glibc.close(wakeFD) }

    func enqueue(_ command: Command, bytes: Int) -> Bool {
        let (accepted, wasEmpty) = commands.withLock { q -> (Bool, Bool) in
            if q.stopping || q.items.count >= settings.maxQueuedSends || q.bytes + bytes > settings.maxQueuedSendBytes {
                return (false, false)
            }
            q.items.append(command)
            q.bytes += bytes
            return (true, q.items.count == 1)
        }
        if !accepted {
            counters.withLock { $0.sendsRefused += 1 }
            return false
        }
        if wasEmpty { wake() }
        return true
    }

    func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Takes the waiting events if there are any (or the transport is closed).
    func takeIfReady() -> [TransportEvent]? {
        let taken: [TransportEvent]? = inbound.withLock { q in
            if !q.events.isEmpty || q.closed { return q.take() }
            return nil
        }
        if taken != nil { resumeReading() }
        return taken
    }

    func takeOrWait(_ c: CheckedContinuation<[TransportEvent], Never>) {
        let now: [TransportEvent]? = inbound.withLock { q in
            if !q.events.isEmpty || q.closed { return q.take() }
            precondition(q.waiter == nil, "Transport.receive has one consumer at a time")
            q.waiter = c
            return nil
        }
        if let now { c.resume(returning: now) }
    }

    /// After the consumer took events: wakes the IO thread if it had stopped reading.
    func resumeReading() {
        let wasPaused = inbound.withLock { q in
            defer { q.paused = false }
            return q.paused
        }
        if wasPaused { wake() }
    }

    func close() {
        let waiter = inbound.withLock { q -> CheckedContinuation<[TransportEvent], Never>? in
            q.closed = true
            defer { q.waiter = nil }
            return q.waiter
        }
        waiter?.resume(returning: [])
    }

    // Called on the IO thread.

    func takeCommands() -> (items: [Command], stopping: Bool) {
        commands.withLock { q in
            defer {
                q.items = []
                q.bytes = 0
            }
            return (q.items, q.stopping)
        }
    }

    /// Hands a batch to the consumer; returns whether the IO thread should stop reading.
    func deliver(_ batch: [TransportEvent]) -> Bool {
        if batch.isEmpty { return inbound.withLock { $0.paused } }
        let (waiter, events, paused) = inbound.withLock {
            q -> (CheckedContinuation<[TransportEvent], Never>?, [TransportEvent], Bool) in
            if let w = q.waiter {
                q.waiter = nil
                return (w, q.take() + batch, false)
            }
            q.events.append(contentsOf: batch)
            if q.events.count >= settings.maxInboundEvents { q.paused = true }
            return (nil, [], q.paused)
        }
        waiter?.resume(returning: events)
        return paused
    }

    func add(_ t: TransportStats) {
        counters.withLock { $0.add(t) }
    }
}

enum Command {
    case send(Remote, [Data])
    case reply(Data, [Data])
    case disconnect(Remote)
}

struct CommandQueue {
    var items: [Command] = []
    var bytes = 0
    var stopping = false
}

struct InboundQueue {
    var events: [TransportEvent] = []
    var waiter: CheckedContinuation<[TransportEvent], Never>?
    var paused = false
    var closed = false

    mutating func take() -> [TransportEvent] {
        defer { events = [] }
        return events
    }
}

