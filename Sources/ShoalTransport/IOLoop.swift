import CZMQ
import Foundation

/// The IO thread of one transport: it owns every socket (the ZAP handler, the ROUTER on the
/// port, one DEALER per remote and their monitors) and runs `zmq_poll` over them and the eventfd
/// that callers write when they queue a send. Everything here runs on that one thread.
final class IOLoop {
    let context: ZMQContext
    let settings: TransportSettings
    let security: TransportSecurity
    let routingID: Data
    let core: TransportCore
    let boundEndpoint: String?

    private let zap: ZMQSocket?
    private let router: ZMQSocket?
    private let routerMonitor: ZMQSocket?
    private var dealers: [Remote: Dealer] = [:]
    private var routerPending = Fifo<[Data]>()
    private var monitors = 0
    private var uses: UInt64 = 0

    /// Counters gathered during one turn of the loop, added to the shared ones once per turn.
    private var tally = TransportStats()
    private var batch: [TransportEvent] = []

    private final class Dealer {
        let remote: Remote
        let socket: ZMQSocket
        let monitor: ZMQSocket
        var pending = Fifo<[Data]>()
        var lastUse: UInt64 = 0
        init(remote: Remote, socket: ZMQSocket, monitor: ZMQSocket) {
            self.remote = remote
            self.socket = socket
            self.monitor = monitor
        }
    }

    /// Bytes CURVE adds to a frame on the wire, at most (its MESSAGE command: name, nonce, MAC, flags).
    static let curveFrameOverhead: Int64 = 64

    /// The ZAP domain this side's port asks its handler about.
    static let zapDomain = "shoal"

    init(
        context: ZMQContext, listen: String?, security: TransportSecurity, settings: TransportSettings,
        routingID: Data, core: TransportCore
    ) throws(TransportError) {
        self.context = context
        self.settings = settings
        self.security = security
        self.routingID = routingID
        self.core = core
        guard let listen else {
            zap = nil
            router = nil
            routerMonitor = nil
            boundEndpoint = nil
            return
        }
        do {
            // The ZAP handler first: without one bound, libzmq accepts every CURVE key.
            var zapSocket: ZMQSocket?
            if case .curve = security {
                let z = try ZMQSocket(context, type: ZMQ_REP)
                try z.bind("inproc://zeromq.zap.01")
                zapSocket = z
            }
            let r = try ZMQSocket(context, type: ZMQ_ROUTER)
            try Self.configure(r, settings)
            try r.set(ZMQ_ROUTER_MANDATORY, Int32(1))
            try r.set(ZMQ_ROUTER_HANDOVER, Int32(1))
            if case .curve(let pair, _, _) = security {
                try r.set(ZMQ_CURVE_SERVER, Int32(1))
                try r.set(ZMQ_CURVE_SECRETKEY, bytes: pair.secretKey.bytes)
                try r.set(ZMQ_ZAP_DOMAIN, string: Self.zapDomain)
            }
            let monitorSocket = try Self.monitor(
                r, context: context, name: "router",
                events: ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_DISCONNECTED)
            do { try r.bind(listen) } catch {
                throw TransportError(message: "cannot listen on \(listen): \(String(cString: zmq_strerror(error.code)))")
            }
            zap = zapSocket
            router = r
            routerMonitor = monitorSocket
            boundEndpoint = r.lastEndpoint()
        } catch let e as TransportError {
            throw e
        } catch {
            throw TransportError(message: "\(error)")
        }
    }

    /// Options every data socket gets.
    private static func configure(_ s: ZMQSocket, _ settings: TransportSettings) throws(ZMQError) {
        // libzmq checks the size on the wire, where CURVE adds its box (a MAC, a nonce and a
        // command name) to each frame: leave room for it, so a frame of exactly maxFrameBytes passes.
        try s.set(ZMQ_MAXMSGSIZE, settings.maxFrameBytes + Self.curveFrameOverhead)
        try s.set(ZMQ_SNDHWM, settings.highWaterMark)
        try s.set(ZMQ_RCVHWM, settings.highWaterMark)
        try s.set(ZMQ_HANDSHAKE_IVL, settings.handshakeTimeoutMs)
        try s.set(ZMQ_HEARTBEAT_IVL, settings.heartbeatIntervalMs)
        try s.set(ZMQ_HEARTBEAT_TIMEOUT, settings.heartbeatTimeoutMs)
        try s.set(ZMQ_RECONNECT_IVL, settings.reconnectIntervalMs)
        try s.set(ZMQ_RECONNECT_IVL_MAX, settings.reconnectMaxMs)
    }

    /// A PAIR socket receiving `socket`'s monitor events.
    private static func monitor(_ socket: ZMQSocket, context: ZMQContext, name: String, events: Int32)
        throws(ZMQError) -> ZMQSocket
    {
        let address = "inproc://shoal-monitor-\(name)"
        guard zmq_socket_monitor(socket.handle, address, events) == 0 else {
            throw ZMQError("zmq_socket_monitor")
        }
        let pair = try ZMQSocket(context, type: ZMQ_PAIR)
        try pair.connect(address)
        return pair
    }

    /// Blocks SIGTERM and SIGINT on the calling thread (and the libzmq threads it starts), so a
    /// signal meant for the process is handled elsewhere and never interrupts `zmq_poll` here.
    static func blockSignals() {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    // MARK: - The loop

    private enum Slot {
        case wake, zap, router, routerMonitor
        case dealer(Dealer)
        case dealerMonitor(Dealer)
    }

    func run() {
        var items: [zmq_pollitem_t] = []
        var slots: [Slot] = []
        let pollIn = Int16(ZMQ_POLLIN)
        let pollOut = Int16(ZMQ_POLLOUT)
        while true {
            let paused = core.deliver([])
            items.removeAll(keepingCapacity: true)
            slots.removeAll(keepingCapacity: true)
            func add(_ socket: ZMQSocket?, _ events: Int16, _ slot: Slot) {
                guard let socket, events != 0 else { return }
                items.append(zmq_pollitem_t(socket: socket.handle, fd: 0, events: events, revents: 0))
                slots.append(slot)
            }
            items.append(zmq_pollitem_t(socket: nil, fd: core.wakeFD, events: pollIn, revents: 0))
            slots.append(.wake)
            add(zap, pollIn, .zap)
            add(router, paused ? 0 : pollIn, .router)
            add(routerMonitor, pollIn, .routerMonitor)
            for d in dealers.values {
                add(d.socket, (paused ? 0 : pollIn) | (d.pending.isEmpty ? 0 : pollOut), .dealer(d))
                add(d.monitor, pollIn, .dealerMonitor(d))
            }
            // Replies waiting for a client's queue are retried every 10 ms (a ROUTER does not say
            // which of its connections became writable).
            let timeout = routerPending.isEmpty ? -1 : 10
            let rc = zmq_poll(&items, Int32(items.count), timeout)
            if rc < 0 {
                let code = zmq_errno()
                if code == EINTR { continue }
                return  // ETERM: the context is going away
            }
            for (item, slot) in zip(items, slots) where item.revents != 0 || isRouterRetry(slot) {
                switch slot {
                case .wake:
                    var value: UInt64 = 0
                    _ = read(core.wakeFD, &value, 8)
                    let (commands, stopping) = core.takeCommands()
                    if stopping { return }
                    for c in commands { apply(c) }
                case .zap: answerZAP()
                case .router:
                    if item.revents & pollIn != 0 { receiveOnRouter() }
                    flushReplies()
                case .routerMonitor: readMonitor(routerMonitor!, dealer: nil)
                case .dealer(let d):
                    if item.revents & pollIn != 0 { receive(on: d) }
                    if item.revents & pollOut != 0 { flush(d) }
                case .dealerMonitor(let d): readMonitor(d.monitor, dealer: d)
                }
            }
            if tally != TransportStats() {
                let t = tally
                core.add(t)
                tally = TransportStats()
            }
            if !batch.isEmpty {
                _ = core.deliver(batch)
                batch.removeAll(keepingCapacity: true)
            }
        }
    }

    private func isRouterRetry(_ slot: Slot) -> Bool {
        if case .router = slot { return !routerPending.isEmpty }
        return false
    }

    func closeAll() {
        for d in dealers.values {
            d.socket.close()
            d.monitor.close()
        }
        dealers = [:]
        router?.close()
        routerMonitor?.close()
        zap?.close()
    }

    // MARK: - Commands

    private func apply(_ command: Command) {
        switch command {
        case .send(let remote, let frames):
            guard let d = dealer(for: remote) else {
                tally.sendsDropped += 1
                return
            }
            uses += 1
            d.lastUse = uses
            if d.pending.isEmpty, trySend(frames, on: d.socket) { return }
            if d.pending.count >= settings.maxPendingPerRemote {
                _ = d.pending.popFirst()
                tally.sendsDropped += 1
            }
            d.pending.append(frames)
        case .reply(let routingID, let frames):
            routerPending.append([routingID] + frames)
            flushReplies()
        case .disconnect(let remote):
            if let d = dealers.removeValue(forKey: remote) { close(d) }
        }
    }

    /// Sends on a DEALER; false if it would block (the caller keeps the message pending).
    private func trySend(_ frames: [Data], on socket: ZMQSocket) -> Bool {
        switch socket.send(frames) {
        case .sent:
            tally.messagesSent += 1
            tally.bytesSent += UInt64(frames.reduce(0) { $0 + $1.count })
            return true
        case .wouldBlock:
            return false
        case .unroutable, .failed:
            tally.sendsDropped += 1
            return true
        }
    }

    private func flush(_ d: Dealer) {
        while let frames = d.pending.first {
            guard trySend(frames, on: d.socket) else { return }
            _ = d.pending.popFirst()
        }
    }

    private func flushReplies() {
        guard let router else {
            tally.sendsDropped += UInt64(routerPending.count)
            routerPending = Fifo()
            return
        }
        while let frames = routerPending.first {
            switch router.send(frames) {
            case .sent:
                tally.messagesSent += 1
                tally.bytesSent += UInt64(frames.dropFirst().reduce(0) { $0 + $1.count })
            case .wouldBlock:
                while routerPending.count > settings.maxPendingPerRemote {
                    _ = routerPending.popFirst()
                    tally.sendsDropped += 1
                }
                return
            case .unroutable, .failed:
                tally.sendsDropped += 1
            }
            _ = routerPending.popFirst()
        }
    }

    private func dealer(for remote: Remote) -> Dealer? {
        if let d = dealers[remote] { return d }
        if dealers.count >= settings.maxRemotes,
            let oldest = dealers.values.min(by: { $0.lastUse < $1.lastUse })
        {
            dealers.removeValue(forKey: oldest.remote)
            close(oldest)
        }
        do {
            let s = try ZMQSocket(context, type: ZMQ_DEALER)
            try Self.configure(s, settings)
            try s.set(ZMQ_ROUTING_ID, bytes: Array(routingID))
            try s.set(ZMQ_IMMEDIATE, Int32(1))
            if case .curve(let pair, _, _) = security {
                guard let serverKey = remote.serverKey else {
                    batch.append(.handshakeFailed(remote, reason: "no public key known for \(remote.endpoint)"))
                    return nil
                }
                try s.set(ZMQ_CURVE_SERVERKEY, bytes: serverKey.bytes)
                try s.set(ZMQ_CURVE_PUBLICKEY, bytes: pair.publicKey.bytes)
                try s.set(ZMQ_CURVE_SECRETKEY, bytes: pair.secretKey.bytes)
            }
            monitors += 1
            let m = try Self.monitor(
                s, context: context, name: "dealer-\(monitors)",
                events: ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                    | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                    | ZMQ_EVENT_DISCONNECTED)
            try s.connect(remote.endpoint)
            let d = Dealer(remote: remote, socket: s, monitor: m)
            dealers[remote] = d
            return d
        } catch {
            batch.append(.handshakeFailed(remote, reason: "\(error)"))
            return nil
        }
    }

    private func close(_ d: Dealer) {
        tally.sendsDropped += UInt64(d.pending.count)
        d.socket.close()
        d.monitor.close()
    }

    // MARK: - Receiving

    private func receiveOnRouter() {
        guard let router else { return }
        for _ in 0..<settings.maxReceiveBatch {
            guard let (message, tooMany) = router.receive(maxFrames: settings.maxFramesPerMessage + 1) else { return }
            guard let routingID = message.frames.first else { continue }
            if tooMany {
                tally.tooManyFrames += 1
                continue
            }
            let origin: Origin
            switch security {
            case .none:
                origin = .connection(routingID: routingID, key: nil, role: .peer)
            case .curve:
                guard let (key, role) = Self.parseUserID(message.userID), Self.routingID(routingID, belongsTo: key)
                else {
                    tally.refusedIdentity += 1
                    continue
                }
                origin = .connection(routingID: routingID, key: key, role: role)
            }
            let body = Array(message.frames.dropFirst())
            tally.messagesReceived += 1
            tally.bytesReceived += UInt64(body.reduce(0) { $0 + $1.count })
            batch.append(.message(Inbound(origin: origin, frames: body)))
        }
    }

    private func receive(on d: Dealer) {
        for _ in 0..<settings.maxReceiveBatch {
            guard let (message, tooMany) = d.socket.receive(maxFrames: settings.maxFramesPerMessage) else { return }
            if tooMany {
                tally.tooManyFrames += 1
                continue
            }
            tally.messagesReceived += 1
            tally.bytesReceived += UInt64(message.frames.reduce(0) { $0 + $1.count })
            batch.append(.message(Inbound(origin: .remote(d.remote), frames: message.frames)))
        }
    }

    /// The user id this side's ZAP handler gives an accepted key: `P` or `C` (peer or client)
    /// and the key's 40 characters of Z85.
    static func userID(for key: CurveKey, role: SenderRole) -> String {
        (role == .peer ? "P" : "C") + key.z85
    }

    static func parseUserID(_ id: String?) -> (CurveKey, SenderRole)? {
        guard let id, id.utf8.count == 41, let key = CurveKey(z85: String(id.dropFirst())) else { return nil }
        switch id.first {
        case "P": return (key, .peer)
        case "C": return (key, .client)
        default: return nil
        }
    }

    /// Whether a routing id is `0x01`, then `key`'s 32 bytes, then at most 16 more.
    static func routingID(_ id: Data, belongsTo key: CurveKey) -> Bool {
        guard id.count >= 33, id.count <= 49, id.first == 0x01 else { return false }
        return id.dropFirst().prefix(32).elementsEqual(key.bytes)
    }

    // MARK: - ZAP (RFC 27)

    private func answerZAP() {
        guard let zap, case .curve(_, let peers, let clients) = security else { return }
        while let (message, _) = zap.receive(maxFrames: 16) {
            let f = message.frames
            let text = { (i: Int) in i < f.count ? String(decoding: f[i], as: UTF8.self) : "" }
            var status = "400"
            var reason = "key not allowed"
            var user = ""
            if f.count >= 7, text(0) == "1.0", text(5) == "CURVE", let key = CurveKey(bytes: Array(f[6])) {
                if peers.contains(key) {
                    (status, reason, user) = ("200", "OK", Self.userID(for: key, role: .peer))
                } else if clients.contains(key) {
                    (status, reason, user) = ("200", "OK", Self.userID(for: key, role: .client))
                } else {
                    tally.rejectedKeys += 1
                }
            } else {
                reason = "only CURVE is accepted"
                tally.failedHandshakes += 1
            }
            let requestID = f.count > 1 ? f[1] : Data()
            _ = zap.send([Data("1.0".utf8), requestID, Data(status.utf8), Data(reason.utf8), Data(user.utf8), Data()])
        }
    }

    // MARK: - Monitors

    private func readMonitor(_ monitor: ZMQSocket, dealer: Dealer?) {
        while let (message, _) = monitor.receive(maxFrames: 2) {
            guard message.frames.count == 2, message.frames[0].count == 6 else { continue }
            let head = message.frames[0]
            let event = Int32(head[head.startIndex]) | Int32(head[head.startIndex + 1]) << 8
            let value = head.dropFirst(2).reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            guard let d = dealer else {
                switch event {
                case ZMQ_EVENT_ACCEPTED: tally.connectionsAccepted += 1
                case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: tally.handshakesSucceeded += 1
                case ZMQ_EVENT_DISCONNECTED: tally.disconnects += 1
                default: tally.failedHandshakes += 1
                }
                continue
            }
            switch event {
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: batch.append(.connected(d.remote))
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: batch.append(.keyRefused(d.remote))
            case ZMQ_EVENT_DISCONNECTED: batch.append(.disconnected(d.remote))
            default:
                batch.append(.handshakeFailed(d.remote, reason: Self.describeHandshakeFailure(event, value)))
            }
        }
    }

    static func describeHandshakeFailure(_ event: Int32, _ value: UInt32) -> String {
        if event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL { return "the connection closed during the handshake" }
        let code = Int32(bitPattern: value)
        if code & 0x1000_0000 != 0 {
            return "a ZMTP protocol error (0x\(String(value, radix: 16))): not a ZeroMQ port, or not one speaking CURVE"
        }
        if code & 0x2000_0000 != 0 { return "a malformed ZAP reply (0x\(String(value, radix: 16)))" }
        return "a CURVE handshake error (0x\(String(value, radix: 16))): the server's key is not the one expected"
    }
}

extension TransportStats {
    mutating func add(_ o: TransportStats) {
        messagesReceived += o.messagesReceived
        bytesReceived += o.bytesReceived
        messagesSent += o.messagesSent
        bytesSent += o.bytesSent
        rejectedKeys += o.rejectedKeys
        failedHandshakes += o.failedHandshakes
        refusedIdentity += o.refusedIdentity
        tooManyFrames += o.tooManyFrames
        connectionsAccepted += o.connectionsAccepted
        handshakesSucceeded += o.handshakesSucceeded
        disconnects += o.disconnects
        sendsRefused += o.sendsRefused
        sendsDropped += o.sendsDropped
    }
}

/// A first-in first-out queue over an array with a moving head (compacted when half is spent).
struct Fifo<Element> {
    private var items: [Element] = []
    private var head = 0
    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    var first: Element? { isEmpty ? nil : items[head] }
    mutating func append(_ e: Element) { items.append(e) }
    mutating func popFirst() -> Element? {
        guard !isEmpty else { return nil }
        let e = items[head]
        head += 1
        if head >= 64 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return e
    }
}
