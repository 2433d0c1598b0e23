import Foundation
import Logging
import Shoal
import ShoalCore
import ShoalShell
import ShoalSimulation
import ShoalStore
import ShoalTransport
import ShoalWire

/// A real peer: the same `PeerMachine` the simulator runs, driven through the same directive
/// interpreter (`PeerShell`) over an LMDB shard, a ZeroMQ transport and the system clock.
///
/// The actor is the control plane: it takes the transport's batches, fires timers, hands task
/// bodies to its worker threads and answers clients. Everything it does per event is: feed the
/// event to the shell, then carry out what the shell asked of its host (`Effects`), in order.
public actor Peer {
    public nonisolated let id: PeerID
    public nonisolated let address: String
    public nonisolated let config: PeerConfig
    let logger: Logger
    let shell: PeerShell
    let shard: LMDBShard
    let transport: Transport
    let security: TransportSecurity
    let known: KnownPeers
    let workers: WorkerPool
    /// How threads outside the actor (workers, the timer queue) reach it.
    nonisolated let wakeBox: WeakPeer
    let clock = ContinuousClock()
    let started: ContinuousClock.Instant
    var effects = Effects()
    var book: [PeerID: WireContact] = [:]
    /// This peer's own address-book entry.
    nonisolated let ownContact: WireContact
    /// The machine's timers, by deadline (the simulator's agenda: equal deadlines in the order set).
    var timers = EventQueue<PeerTimer>()
    nonisolated(unsafe) let timerSource: DispatchSourceTimer
    var armedAt: Int64 = .max
    var counters = PeerCounters()
    var metrics = PeerMetrics()
    var clients = ClientTable()
    var stopped = false
    var refusedVersions: Set<UInt32> = []
    var lastProgressAt = Instant.zero
    /// This peer's steal requests (sent to granted or refused) and its data fetches (sent to the
    /// bytes received and checked: a large value's transfer time).
    var steals = RoundTrips()
    var fetches = RoundTrips(forgetAfter: .seconds(60))
    static let progressInterval = Interval.milliseconds(200)
    /// Most address-book entries (membership's own bound, `MembershipSettings.maxMembers`).
    static let maxContacts = 131_072
    /// The registered task names this peer's runners know (a submitted file naming another is refused).
    let knownTasks: Set<String>

    /// Opens the shard and binds the port. `runners` run task bodies, one per slot.
    public init(config: PeerConfig, runners: [any TaskBodyRunner & Sendable], knownTasks: Set<String>, logger: Logger) throws {
        // Everything is computed in locals first: an actor's nonisolated initializer may not read
        // its own stored properties once it starts using them.
        let security: TransportSecurity
        switch config.security {
        case .curve:
            let pair = try CurveKeyPair.read(secretKeyFile: config.key!)
            let peers = try CurveKey.readAllowList(config.peersAllow!)
            let clients = try config.clientsAllow.map { path throws(KeyFileError) in try CurveKey.readAllowList(path) } ?? []
            security = .curve(pair, peers: peers.union([pair.publicKey]), clients: clients)
        case .none:
            security = .none
        }
        // Bound first: with port 0 the address (and in trusted mode the id) is the kernel's choice.
        let transport = try Transport(listen: config.listen, security: security)
        let address = config.advertise ?? transport.endpoint ?? config.listen
        let id = PeerIdentity.id(address: address, key: security.keyPair?.publicKey)
        let known = try config.knownPeers.map { path throws(KeyFileError) in try KnownPeers.read(path) } ?? KnownPeers()
        try FileManager.default.createDirectory(atPath: config.dataDirectory, withIntermediateDirectories: true)
        let shard = try LMDBShard(directory: config.dataDirectory + "/shard")
        var settings = PeerSettings()
        settings.membership.setProtocolPeriod(.milliseconds(Int64(config.protocolPeriodMs)))
        // One slot per body thread; a deeper queue is prefetch: jobs queued for those threads,
        // neither free slots nor offered to thieves.
        settings.work.slots = runners.count
        settings.work.prefetch = runners.count * (config.queueDepth - 1)
        settings.placement.replicas = config.replicas
        // Large objects: 20 ms more per MiB (50 MB/s, far under loopback's and a LAN's) before a
        // store or a transfer is sent again, and gets that wait for big answers.
        settings.placement.timeoutPerMiB = .milliseconds(20)
        settings.placement.getTimeout = .milliseconds(500)
        settings.catalogue = runners.first?.catalogue ?? []
        // The seed of a peer's generator: its id, then the time it starts (a restarted peer draws
        // new workflow ids and probe orders).
        let seed = id.raw ^ UInt64(UInt(bitPattern: Int(Date().timeIntervalSince1970 * 1e6)))
        let shell = try PeerShell(machine: PeerMachine(id: id, settings: settings, seed: seed), shard: shard)
        let own = PeerIdentity.contact(address: address, key: security.keyPair?.publicKey)
        let box = WeakPeer()
        self.config = config
        self.knownTasks = knownTasks
        self.logger = logger
        self.security = security
        self.transport = transport
        self.address = address
        self.id = id
        self.known = known
        self.shard = shard
        self.shell = shell
        self.ownContact = own
        self.wakeBox = box
        started = ContinuousClock.now
        timerSource = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "shoal-timers"))
        workers = WorkerPool(runners: runners) { box.wake { await $0.takeResults() } }
    }

    /// Runs until `stop()`: joins through the seeds, then serves. `ready` is called once the peer
    /// accepts work (its port is bound and its machine started).
    public func run(ready: @Sendable (PeerID, String) -> Void) async {
        wakeBox.peer = self
        book[id] = ownContact
        let box = wakeBox
        timerSource.setEventHandler { box.wake { await $0.fireTimers() } }
        timerSource.schedule(deadline: .distantFuture)
        timerSource.resume()
        if config.security == .none {
            logger.warning("security: none: no encryption and no authentication; any process that reaches \(config.listen) is a peer")
        }
        var seeds: [PeerID] = []
        for address in config.seeds where address != self.address {
            guard let seed = seedContact(address) else {
                logger.error("seed \(address): its public key is not in known-peers; it is skipped")
                continue
            }
            book[PeerID(raw: seed.peer)] = seed
            seeds.append(PeerID(raw: seed.peer))
        }
        let recovered = shell.start(seeds: seeds, now: now, host: &effects)
        carryOut()
        if recovered.objects + recovered.records > 0 {
            logger.info("recovered \(recovered.objects) objects and \(recovered.records) workflow records from the shard")
        }
        ready(id, address)
        logger.info("peer \(id.hex) listening on \(config.listen), advertised as \(address), \(config.slots) slots")
        while !stopped {
            let batch = await transport.receive()
            if batch.isEmpty { break }
            for event in batch { handle(event) }
            carryOut()
        }
    }

    /// A graceful leave: membership tells the others this peer is leaving (not dead), then the
    /// peer stops. (Owned workflows are not yet handed to a backup first: their backups take them
    /// over as from a dead owner.)
    public func leave() async {
        logger.info("leaving the cluster")
        shell.step(.leave, now: now, host: &effects)
        carryOut()
        try? await Task.sleep(for: .milliseconds(100))  // the leave messages go out (LINGER is 0)
        stop()
    }

    public func stop() {
        guard !stopped else { return }
        stopped = true
        timerSource.cancel()
        workers.stop()
        transport.shutdown()
    }

    var now: Instant { Instant(nanoseconds: Int64((clock.now - started) / .nanoseconds(1))) }

    // MARK: Events in

    private func handle(_ event: TransportEvent) {
        switch event {
        case .message(let inbound): receive(inbound)
        case .connected(let remote): logger.debug("connected to \(remote)")
        case .keyRefused(let remote): logger.warning("\(remote) does not accept this peer's key (it is not on its peers allow-list)")
        case .handshakeFailed(let remote, let reason): logger.debug("handshake with \(remote) failed: \(reason)")
        case .disconnected(let remote): logger.debug("disconnected from \(remote)")
        }
    }

    private func receive(_ inbound: Inbound) {
        guard case .connection(let routingID, let key, let role) = inbound.origin else { return }
        let message: WireMessage
        do { message = try Wire.decode(inbound.frames) } catch {
            counters.dropped(error)
            if case .version(let v) = error, refusedVersions.insert(v).inserted {
                logger.warning("refused a message of wire version \(v) from \(key?.short ?? "a connection"): this peer speaks version \(Wire.version)")
            }
            return
        }
        switch message.body {
        case .peer(let m, let contacts):
            guard role == .peer else {
                counters.refusedRole += 1
                return
            }
            let sender = message.sender
            if let key, PeerIdentity.id(key: key) != sender {
                counters.spoofedSender += 1
                return
            }
            guard sender.raw != 0, sender != id else {
                counters.spoofedSender += 1
                return
            }
            learn(contacts)
            let payloads = message.payloads.map(\.bytes)
            counters.peerMessages += 1
            shell.receive(m, payloads: payloads, from: sender, now: now, host: &effects)
            timeAnswer(m)  // after the shell checked the bytes' digest: part of a fetch's time
        case .request(let request):
            serve(request, payloads: message.payloads, from: routingID, role: role)
        case .reply:
            counters.dropped(.invalid("a reply sent to a peer's port"))
        }
    }

    /// Adds the contacts that name themselves truthfully to the address book.
    private func learn(_ contacts: [WireContact]) {
        for c in contacts where c.peer != id.raw {
            guard PeerIdentity.isConsistent(c) else {
                counters.badContacts += 1
                continue
            }
            if config.security == .curve && c.publicKey.isEmpty { continue }
            // Bounded like the membership table it serves: past it, only known entries change.
            guard book[PeerID(raw: c.peer)] != nil || book.count < Self.maxContacts else {
                counters.badContacts += 1
                continue
            }
            book[PeerID(raw: c.peer)] = c
        }
    }

    func fireTimers() {
        armedAt = .max
        let t = now
        while let next = timers.nextTime, next <= t, let (_, due) = timers.pop() {
            shell.step(.timer(due), now: now, host: &effects)
        }
        carryOut()
        sendProgress()
    }

    func takeResults() {
        for done in workers.takeResults() {
            switch shell.finish(done.job, outputs: done.outputs, host: &effects) {
            case .success(let outputs): shell.step(.executed(task: done.job.task, outputs: outputs), now: now, host: &effects)
            case .failure(let failure): shell.step(.failed(task: done.job.task, failure: failure), now: now, host: &effects)
            }
        }
        carryOut()
    }

    // MARK: Effects out

    /// Carries out what the shell asked for, in order, until nothing is left (a report may make
    /// the peer step the shell again).
    func carryOut() {
        while !effects.isEmpty {
            var batch = Effects()
            swap(&batch, &effects)
            for (message, payloads, to) in batch.sends { send(message, payloads: payloads, to: to) }
            for (timer, after) in batch.timers { timers.schedule(timer, at: now + after) }
            for job in batch.jobs {
                workers.submit(job, workflowName: clients.name(of: job.task.workflow) ?? "workflow-\(job.task.workflow.raw)")
            }
            for (report, bytes) in batch.reports { reported(report, bytes: bytes) }
        }
        if let next = timers.nextTime?.nanoseconds, next < armedAt {
            armedAt = next
            let delay = max(0, next - now.nanoseconds)
            timerSource.schedule(deadline: .now() + .nanoseconds(Int(clamping: delay)), leeway: .microseconds(200))
        }
    }

    /// A steal request or a data fetch leaves: its round trip starts.
    private func timeRequest(_ message: PeerMessage) {
        switch message {
        case .steal(.request(let rid, _, _, _)): steals.sent(rid, at: now)
        case .work(.fetch(_, let rid)): fetches.sent(rid, at: now)
        default: break
        }
    }

    /// Its answer arrived: the round trip ends (a refused steal is timed; a fetch answered "no
    /// data" is not).
    private func timeAnswer(_ message: PeerMessage) {
        switch message {
        case .steal(.reply(let rid, _)), .steal(.refused(let rid)): steals.answered(rid, bytes: 0, at: now)
        case .work(.data(_, let rid, let value)): fetches.answered(rid, bytes: value.bytes, at: now)
        case .work(.noData(_, let rid)): fetches.answered(rid, bytes: nil, at: now)
        default: break
        }
    }

    private func send(_ message: PeerMessage, payloads: [[UInt8]], to: PeerID) {
        timeRequest(message)
        guard let c = book[to] else {
            counters.unknownDestination += 1
            return
        }
        var contacts: [WireContact] = []
        if case .membership(let m) = message {
            contacts.append(book[id]!)
            for u in m.updates where u.peer != id && u.peer != to { if let known = book[u.peer] { contacts.append(known) } }
        }
        let wire = WireMessage(body: .peer(message, contacts: contacts), payloads: payloads.map(WirePayload.init(sharing:)), sender: id)
        if !transport.send(Wire.encode(wire), to: remote(c)) { counters.sendsRefused += 1 }
    }

    func remote(_ c: WireContact) -> Remote {
        Remote(endpoint: c.address, serverKey: c.publicKey.isEmpty ? nil : CurveKey(bytes: Array(c.publicKey)))
    }

    /// A seed's contact: under CURVE its key must be in known-peers.
    private func seedContact(_ address: String) -> WireContact? {
        guard config.security == .none else {
            return known.keys[address].map { PeerIdentity.contact(address: address, key: $0) }
        }
        return PeerIdentity.contact(address: address, key: nil)
    }
}

/// What the shell asks of a real peer, collected while it steps and carried out after
/// (`Peer.carryOut`). A report's bytes (a result's, a waited value's) are read when it is made: the
/// shell drops an ended workflow's bytes right after it reports the end.
struct Effects: PeerShellHost {
    var sends: [(PeerMessage, [[UInt8]], PeerID)] = []
    var timers: [(PeerTimer, Interval)] = []
    var jobs: [TaskJob] = []
    var reports: [(ShellReport, [[UInt8]?])] = []

    var isEmpty: Bool { sends.isEmpty && timers.isEmpty && jobs.isEmpty && reports.isEmpty }

    func hasRealBytes(_ workflow: WorkflowID) -> Bool { true }
    mutating func send(_ message: PeerMessage, payloads: [[UInt8]], to: PeerID, from shell: PeerShell) {
        sends.append((message, payloads, to))
    }
    mutating func schedule(_ timer: PeerTimer, after: Interval, at shell: PeerShell) { timers.append((timer, after)) }
    mutating func execute(_ job: TaskJob, at shell: PeerShell) { jobs.append(job) }
    mutating func report(_ report: ShellReport, at shell: PeerShell) {
        var bytes: [[UInt8]?] = []
        switch report {
        case .completed(_, let results, _): bytes = results.map { $0.flatMap { shell.payloads.bytes(of: $0) } }
        case .waited(_, _, let value): bytes = [value.flatMap { shell.payloads.bytes(of: $0) }]
        case .getResult(_, let object): bytes = [object.flatMap { shell.payloads.objects[$0.value.content] }]
        default: break
        }
        reports.append((report, bytes))
    }
}

/// A reference to the peer that a thread outside it (a worker, the timer queue) can wake it
/// through.
final class WeakPeer: @unchecked Sendable {
    weak var peer: Peer?
    func wake(_ body: @escaping @Sendable (Peer) async -> Void) {
        guard let peer else { return }
        Task { await body(peer) }
    }
}

/// What a peer counts of the messages it refused or could not deliver (the status reply's
/// `dropped` figures).
struct PeerCounters {
    var peerMessages: UInt64 = 0
    var malformed: UInt64 = 0
    var wrongVersion: UInt64 = 0
    var invalid: UInt64 = 0
    var refusedRole: UInt64 = 0
    var spoofedSender: UInt64 = 0
    var badContacts: UInt64 = 0
    var unknownDestination: UInt64 = 0
    var sendsRefused: UInt64 = 0
    var clientRequests: UInt64 = 0

    var droppedTotal: UInt64 { malformed + wrongVersion + invalid + refusedRole + spoofedSender + badContacts }

    mutating func dropped(_ error: WireError) {
        switch error {
        case .version: wrongVersion += 1
        case .empty, .malformed, .payloads: malformed += 1
        case .invalid: invalid += 1
        }
    }
}
