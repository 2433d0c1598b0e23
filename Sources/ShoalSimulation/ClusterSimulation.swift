import ShoalCore

/// A scenario for the simulator: how many peers, how they join, the network, the faults, how long.
public struct Scenario: Sendable, Codable, Hashable {
    public var name: String
    public var peers: Int
    /// Virtual time the run lasts, in seconds.
    public var durationSeconds: Double
    /// The first `seeds` peers are the seeds every other peer joins through.
    public var seeds: Int
    /// Peers start spread evenly over this many seconds (0: all at once, a join storm).
    public var joinSpreadSeconds: Double
    public var network: NetworkSettings
    public var protocolPeriodMs: Int64
    public var faults: FaultPlan
    /// Seconds after the last fault heals by which membership must have converged.
    public var convergeWithinSeconds: Double

    public init(
        name: String, peers: Int, durationSeconds: Double, seeds: Int = 1, joinSpreadSeconds: Double = 0,
        network: NetworkSettings = NetworkSettings(), protocolPeriodMs: Int64 = 200, faults: FaultPlan = FaultPlan(),
        convergeWithinSeconds: Double = 10
    ) {
        self.name = name
        self.peers = peers
        self.durationSeconds = durationSeconds
        self.seeds = seeds
        self.joinSpreadSeconds = joinSpreadSeconds
        self.network = network
        self.protocolPeriodMs = protocolPeriodMs
        self.faults = faults
        self.convergeWithinSeconds = convergeWithinSeconds
    }

    public var duration: Interval { Interval(nanoseconds: Int64(durationSeconds * 1e9)) }
}

/// What a run found.
public struct SimulationReport: Sendable, Codable, Hashable {
    public var scenario: String
    public var seed: UInt64
    public var peers: Int
    public var virtualSeconds: Double
    public var events: Int
    public var network: NetworkStatistics
    public var faultsInjected: [String]
    public var statusChanges: Int
    /// Virtual seconds from the start (or from the last heal) until every live peer saw every live
    /// peer alive and every crashed peer dead, or nil if that never happened.
    public var convergedAfterSeconds: Double?
    public var invariantsChecked: [String]
    public var violations: [String]

    public var passed: Bool { violations.isEmpty }
}

/// Plays a cluster of peers running the real membership machine over the simulated network, in
/// virtual time, from one seed. Single-threaded: the run is a pure function of (scenario, seed).
public struct ClusterSimulation {
    enum Event {
        case start(PeerID)
        /// A message for one incarnation of a peer's process (`generation`): messages to a process
        /// that crashed are lost with it.
        case deliver(to: PeerID, generation: UInt32, from: PeerID, message: MembershipMessage)
        case timer(PeerID, generation: UInt32, MembershipTimer)
        case fault(Fault)
        case check
    }

    struct Peer {
        var machine: Membership?
        var generation: UInt32 = 0
        var up = false
        var everStarted = false
    }

    public let scenario: Scenario
    public let seed: UInt64
    var queue = EventQueue<Event>()
    var network: SimulatedNetwork
    var peers: [Peer]
    var now = Instant.zero
    var directives: [MembershipDirective] = []
    var generator: SeededGenerator
    var settings: MembershipSettings
    var report: SimulationReport
    var trace: TraceRecorder?
    /// When the last fault healed (or the last peer started): convergence is measured from here.
    var settledSince = Instant.zero
    var lastFaultTime = Instant.zero

    /// The membership settings every peer runs with (derived from the scenario; tests may change
    /// them, for instance to break a rule on purpose and see a checker catch it).
    public init(
        scenario: Scenario, seed: UInt64, recordTrace: Bool = false,
        adjust: (inout MembershipSettings) -> Void = { _ in }
    ) {
        precondition(scenario.peers > 0 && scenario.seeds > 0, "a scenario needs peers and seeds: \(scenario)")
        self.scenario = scenario
        self.seed = seed
        generator = SeededGenerator(seed: seed)
        network = SimulatedNetwork(settings: scenario.network, seed: generator.next())
        peers = Array(repeating: Peer(), count: scenario.peers)
        settings = MembershipSettings()
        settings.protocolPeriod = .milliseconds(scenario.protocolPeriodMs)
        settings.pingTimeout = Interval(nanoseconds: settings.protocolPeriod.nanoseconds * 3 / 10)
        adjust(&settings)
        report = SimulationReport(
            scenario: scenario.name, seed: seed, peers: scenario.peers, virtualSeconds: 0, events: 0,
            network: NetworkStatistics(), faultsInjected: [], statusChanges: 0, convergedAfterSeconds: nil,
            invariantsChecked: [], violations: [])
        trace = recordTrace ? TraceRecorder() : nil
    }

    /// Runs the scenario to its end and checks the invariants.
    public mutating func run() -> SimulationReport {
        let spread = Int64(scenario.joinSpreadSeconds * 1e9)
        for i in 0..<scenario.peers {
            let at = scenario.peers > 1 && i >= scenario.seeds ? spread * Int64(i) / Int64(scenario.peers) : 0
            queue.schedule(.start(PeerID(raw: UInt64(i))), at: Instant(nanoseconds: at))
            settledSince = max(settledSince, Instant(nanoseconds: at))
        }
        for f in scenario.faults.faults {
            queue.schedule(.fault(f.fault), at: Instant.zero + f.at)
            lastFaultTime = max(lastFaultTime, Instant.zero + f.at)
        }
        // Check convergence every protocol period once the last fault is past.
        queue.schedule(.check, at: max(settledSince, lastFaultTime) + settings.protocolPeriod)
        let end = Instant.zero + scenario.duration
        while let next = queue.nextTime, next <= end, let (time, event) = queue.pop() {
            now = time
            report.events += 1
            handle(event)
        }
        now = end
        finish()
        return report
    }

    /// The Chrome trace-event JSON of the run (if recorded).
    public var traceJSON: String? { trace?.json() }

    // MARK: Events

    mutating func handle(_ event: Event) {
        switch event {
        case .start(let p):
            startPeer(p)
        case .deliver(let to, let generation, let from, let message):
            let i = Int(to.raw)
            guard peers[i].up, peers[i].generation == generation else { return }
            step(to, .message(message, from: from))
        case .timer(let p, let generation, let timer):
            let i = Int(p.raw)
            guard peers[i].up, peers[i].generation == generation else { return }
            step(p, .timer(timer))
        case .fault(let fault):
            apply(fault)
        case .check:
            if report.convergedAfterSeconds == nil {
                if converged() {
                    report.convergedAfterSeconds = (now - settledSince).seconds
                } else {
                    queue.schedule(.check, at: now + settings.protocolPeriod)
                }
            }
        }
    }

    mutating func startPeer(_ p: PeerID) {
        let i = Int(p.raw)
        peers[i].generation &+= 1
        peers[i].up = true
        peers[i].everStarted = true
        peers[i].machine = Membership(id: p, settings: settings, seed: generator.next())
        let seeds = (0..<min(scenario.seeds, scenario.peers)).map { PeerID(raw: UInt64($0)) }.filter { $0 != p }
        trace?.instant("start", peer: p, at: now)
        step(p, .start(seeds: seeds))
    }

    mutating func step(_ p: PeerID, _ event: MembershipEvent) {
        let i = Int(p.raw)
        directives.removeAll(keepingCapacity: true)
        peers[i].machine!.on(event, now: now, into: &directives)
        let generation = peers[i].generation
        for d in directives {
            switch d {
            case .send(let message, let to):
                guard Int(to.raw) < peers.count else { continue }
                for at in network.send(from: p, to: to, bytes: message.byteSize, now: now) {
                    queue.schedule(
                        .deliver(to: to, generation: peers[Int(to.raw)].generation, from: p, message: message), at: at)
                }
            case .schedule(let timer, let after):
                queue.schedule(.timer(p, generation: generation, timer), at: now + after)
            case .statusChanged(let peer, let status):
                report.statusChanges += 1
                trace?.instant("\(p) sees \(peer) \(status)", peer: p, at: now)
            }
        }
    }

    mutating func apply(_ fault: Fault) {
        report.faultsInjected.append("\(now): \(fault)")
        trace?.instant("fault: \(fault)", peer: nil, at: now)
        switch fault {
        case .crash(let p):
            let i = Int(p.raw)
            guard i < peers.count else { return }
            peers[i].up = false
            peers[i].machine = nil
        case .restart(let p, _):
            guard Int(p.raw) < peers.count, !peers[Int(p.raw)].up else { return }
            startPeer(p)
        case .partition, .heal, .setDrop, .setDuplicate:
            network.apply(fault)
        }
        settledSince = max(settledSince, now)
    }

    // MARK: Invariants

    /// Every live peer sees every live peer alive and every crashed peer dead (or left).
    func converged() -> Bool {
        let live = peers.indices.filter { peers[$0].up }
        for i in live {
            guard let m = peers[i].machine else { return false }
            for j in peers.indices where peers[j].everStarted {
                let peer = PeerID(raw: UInt64(j))
                let status = m.member(peer)?.status
                if peers[j].up {
                    guard status == .alive else { return false }
                } else {
                    guard status == .dead || status == .left else { return false }
                }
            }
        }
        return true
    }

    mutating func finish() {
        report.virtualSeconds = (now - .zero).seconds
        report.network = network.statistics
        report.invariantsChecked.append("membership converges within \(scenario.convergeWithinSeconds) s after the last fault heals")
        if let after = report.convergedAfterSeconds {
            if after > scenario.convergeWithinSeconds {
                report.violations.append(
                    "membership converged only \(after) s after the last fault (limit \(scenario.convergeWithinSeconds) s)")
            }
        } else {
            let (who, what) = firstDisagreement() ?? ("?", "?")
            report.violations.append("membership never converged: \(who) \(what)")
        }
    }

    func firstDisagreement() -> (String, String)? {
        for i in peers.indices where peers[i].up {
            guard let m = peers[i].machine else { continue }
            for j in peers.indices where peers[j].everStarted {
                let peer = PeerID(raw: UInt64(j))
                let status = m.member(peer)?.status
                let expected: MemberStatus = peers[j].up ? .alive : .dead
                if status != expected && !(expected == .dead && status == .left) {
                    return ("p\(i)", "sees \(peer) as \(status.map { "\($0)" } ?? "unknown"), expected \(expected)")
                }
            }
        }
        return nil
    }
}

/// Records a run as Chrome trace-event JSON (opens in Perfetto / chrome://tracing): one track per
/// peer, instant events for starts, status changes and faults. Deterministic output.
struct TraceRecorder {
    private var events: [String] = []

    mutating func instant(_ name: String, peer: PeerID?, at time: Instant) {
        let tid = peer.map { Int($0.raw) + 1 } ?? 0
        var escaped = ""
        for c in name {
            if c == "\\" || c == "\"" { escaped.append("\\") }
            escaped.append(c)
        }
        events.append(
            "{\"name\":\"\(escaped)\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":\(tid),\"ts\":\(time.nanoseconds / 1000)}")
    }

    func json() -> String {
        "{\"traceEvents\":[\n" + events.joined(separator: ",\n") + "\n]}\n"
    }
}
