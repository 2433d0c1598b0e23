import ShoalCore
import ShoalShell

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
    /// Workflows submitted during the run.
    public var workflows: [ScenarioWorkflow]
    /// Task slots per peer.
    public var slots: Int
    /// Persistent objects written during the run.
    public var objects: ObjectWorkload?
    /// Most bytes of workflow values one peer's shell holds in memory from what it makes: a task
    /// whose outputs would pass it fails with the reason (its policy then applies; counted in
    /// `SimulationReport.payloadsRefused`). What a peer receives (the inputs of the tasks it
    /// runs, a record's initial data) and a submitter's own initial data are always kept, so a
    /// peer holds at most this plus those.
    public var maxHeldBytes: UInt64
    /// Run the whole duration even once everything has settled (benchmarks of a steady state);
    /// otherwise a run without objects stops when membership has converged after the last fault
    /// and every workflow has ended.
    public var runToEnd: Bool

    public init(
        name: String, peers: Int, durationSeconds: Double, seeds: Int = 1, joinSpreadSeconds: Double = 0,
        network: NetworkSettings = NetworkSettings(), protocolPeriodMs: Int64 = 200, faults: FaultPlan = FaultPlan(),
        convergeWithinSeconds: Double = 10, workflows: [ScenarioWorkflow] = [], slots: Int = 4,
        objects: ObjectWorkload? = nil, runToEnd: Bool = false, maxHeldBytes: UInt64 = 1 << 32
    ) {
        self.maxHeldBytes = maxHeldBytes
        self.name = name
        self.peers = peers
        self.durationSeconds = durationSeconds
        self.seeds = seeds
        self.joinSpreadSeconds = joinSpreadSeconds
        self.network = network
        self.protocolPeriodMs = protocolPeriodMs
        self.faults = faults
        self.convergeWithinSeconds = convergeWithinSeconds
        self.workflows = workflows
        self.slots = slots
        self.objects = objects
        self.runToEnd = runToEnd
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
    public var workflows: [WorkflowOutcome] = []
    /// Work and stealing counters summed over every peer (crashed ones included).
    public var work = WorkCounters()
    public var steal = StealCounters()
    /// Membership and placement counters summed over every peer (what their bounds refused).
    public var membership = MembershipCounters()
    public var placement = PlacementCounters()
    /// Tasks run per peer: least, median, most (over peers that ever started).
    public var tasksPerPeer: [Int] = []
    public var objects: ObjectStatistics?
    /// Real values whose attached bytes did not match their digest on receipt (dropped), and real
    /// values that came without their bytes (their sender's shell no longer had them; dropped too).
    public var corruptPayloads = 0
    public var missingPayloads = 0
    /// Task outputs refused because keeping them would pass the peer's `maxHeldBytes`.
    public var payloadsRefused = 0

    public var passed: Bool { violations.isEmpty }
}

/// Plays a cluster of peers running the real protocol machines (`PeerMachine`: membership, work
/// stealing, workflow ownership and data) over the simulated network, in virtual time, from one
/// seed. Task bodies are modelled: a task takes its cost in virtual time and computes its outputs
/// from its inputs (`WorkflowPlan.modelledOutputs`); the results are checked against the program
/// run on its own, call by call (`ModelledProgram`). Single-threaded: the run is a pure function of
/// (scenario, seed).
public struct ClusterSimulation {
    enum Event {
        case start(PeerID)
        /// A message for one incarnation of a peer's process (`generation`): messages to a process
        /// that crashed are lost with it.
        /// `payloads`: the bytes of the real values the message carries, in its order of values
        /// (none for modelled values).
        case deliver(to: PeerID, generation: UInt32, from: PeerID, message: PeerMessage, payloads: [[UInt8]])
        case timer(PeerID, generation: UInt32, PeerTimer)
        case executed(PeerID, generation: UInt32, task: TaskRef, outputs: [DataValue])
        case failed(PeerID, generation: UInt32, task: TaskRef, failure: TaskFailure)
        case submit(Int)
        /// The growing program of workflow w takes its next step, after a wait answered `value`
        /// (nil: its first), or closes its workflow.
        case programStep(Int, value: UInt64?)
        case programClose(Int)
        case programBarrier(Int, requestID: UInt64, at: PeerID)
        /// The n-th put of the object workload.
        case put(Int)
        case fault(Fault)
        case check
    }

    struct Peer {
        /// Its process: the machine and the bytes it holds, run by the shared interpreter (nil
        /// while it is down).
        var shell: PeerShell?
        var machine: PeerMachine? { shell?.machine }
        var generation: UInt32 = 0
        var up = false
        var everStarted = false
        var tasksRun = 0
        /// Its disk: persistent objects survive a crash here unless it restarts without its store.
        var shard = MemoryShard()
        /// Until when a restart without the store counts it as down (its copies are being re-made).
        var emptyUntil = Instant.zero
    }

    /// What the checkers keep about one submitted workflow.
    struct Tracked {
        /// The program (what the shell runs bodies from and the checker interprets) and its plan
        /// (what the machines are given).
        var spec: WorkflowSpec
        var plan: WorkflowPlan
        /// Real bodies, initial bytes and the reference outcome (a `file:` workflow), or nil for a
        /// modelled one.
        var program: ProgramWorkflow?
        /// The results its owner reported when it completed, and (a program with real bodies) the
        /// bytes of its outputs, read from the owner then (they were fetched to it to be checked).
        var results: [DataValue?]?
        var outputBytes: [[UInt8]?] = []
        /// A program that grows the workflow as it runs (its calls so far are `spec`), the round
        /// it is in and the wait it is blocked on.
        var adaptive: AdaptiveProgram?
        var round = 0
        var pendingWait: (requestID: UInt64, datum: Int, closesAfter: Bool)?
        /// The program waits at a barrier before its wait.
        var pendingBarrier: UInt64?
        /// A client's program (`submitProgram`): its peer and its tasks' cost; what its requests
        /// were answered.
        var client: (submitter: Int, taskMicros: Int64)?
        var answers: [UInt64: ProgramAnswer] = [:]
        /// How many of its requests were answered, and whether each answer was its local run's
        /// (`ProgramWorkflow.Expected.answers`).
        var answerCount = 0
        var answersMatch = true
        var uncompared: Set<UInt64> = []
        /// A task of it failed because its outputs would pass a peer's `maxHeldBytes`.
        var hitHeldBytesLimit = false
        /// Whether the workflow grows while its program runs (it dies with the program's peer
        /// until the program closes it).
        var grows: Bool { adaptive != nil || client != nil }
        var closed = false
        /// The id its submitter drew for it, once submitted.
        var id: WorkflowID? = nil
        var expected: ModelledProgram.Outcome?
        var outcome: WorkflowOutcome
        var submittedAt = Instant.zero
        /// Results applied and re-openings per task, by each owner (a peer index; a takeover or a
        /// restart starts the count again, from the record).
        var applied: [Int: [UInt8]] = [:]
        var reopened: [Int: [UInt16]] = [:]

        /// A batch of a growing program, as the checker knows the program: its calls so far
        /// (`spec`), with the data they defined.
        mutating func record(_ calls: [WorkflowTaskSpec], newData: Int) {
            if newData > 0 { spec.marks.append(.init(beforeTask: spec.tasks.count, .newData(count: Int32(newData)))) }
            spec.dataCount += newData
            spec.tasks += calls
            outcome.tasks = spec.tasks.count
        }

        /// Counts one more for `task` by `owner` of `tasks` (the program may have grown since the
        /// count began).
        static func count<N: FixedWidthInteger>(_ counts: inout [Int: [N]], owner: Int, task: Int, of tasks: Int) {
            var list = counts.removeValue(forKey: owner) ?? []
            if list.count < tasks { list += repeatElement(0, count: tasks - list.count) }
            list[task] &+= 1
            counts[owner] = list
        }
    }

    public let scenario: Scenario
    public let seed: UInt64
    var queue = EventQueue<Event>()
    var network: SimulatedNetwork
    var peers: [Peer]
    var now = Instant.zero
    var generator: SeededGenerator
    var settings: PeerSettings
    var report: SimulationReport
    var trace: TraceRecorder?
    /// Runs the real bodies of `file:` workflows.
    let runner: (any TaskBodyRunner)?
    /// Tests: flip a byte of every n-th payload sent (0: never), to see the receiver's digest
    /// check catch it; and how many were sent.
    var corruptEveryNthPayload = 0
    var payloadsSent = 0
    /// Tests: change the values programs' waits are answered with, to see the checker catch it.
    var tamperWaitedValues = false
    /// The last request id handed to a client's program.
    var nextClientRequest: UInt64 = 0
    var workflows: [Tracked] = []
    var workflowIndex: [WorkflowID: Int] = [:]
    var violationCounts: [String: Int] = [:]
    /// Object workload: puts in flight (request id -> key, content) and the newest acknowledged
    /// (version, content) per key.
    var pendingPuts: [UInt64: (key: UInt64, content: UInt64)] = [:]
    /// Requests of client programs to the placement machines (`putObject`, `getObject`), from
    /// `ClusterSimulation.clientRequests` on, and their answers.
    var nextObjectRequest = ClusterSimulation.clientRequests
    var objectAnswers: [UInt64: ObjectAnswer] = [:]
    var acknowledged: [UInt64: (version: ObjectVersion, content: UInt64)] = [:]
    /// When the last fault healed (or the last peer started): convergence is measured from here.
    var settledSince = Instant.zero
    var lastFaultTime = Instant.zero

    /// The settings every peer runs with are derived from the scenario; `adjust` may change them
    /// (tests use it to break a rule on purpose and see a checker catch it).
    /// `runner` runs the real bodies of the scenario's `file:` workflows (required when it has
    /// any).
    public init(
        scenario: Scenario, seed: UInt64, recordTrace: Bool = false, runner: (any TaskBodyRunner)? = nil,
        adjust: (inout PeerSettings) -> Void = { _ in }
    ) {
        precondition(scenario.peers > 0 && scenario.seeds > 0, "a scenario needs peers and seeds: \(scenario)")
        precondition(
            runner != nil || scenario.workflows.allSatisfy { $0.program == nil },
            "a scenario with real task bodies needs a runner for them")
        self.scenario = scenario
        self.seed = seed
        self.runner = runner
        generator = SeededGenerator(seed: seed)
        network = SimulatedNetwork(settings: scenario.network, seed: generator.next())
        peers = (0..<scenario.peers).map { _ in Peer() }  // each its own shard (a class: never `repeating:`)
        settings = PeerSettings()
        settings.membership.setProtocolPeriod(.milliseconds(scenario.protocolPeriodMs))
        settings.work.slots = scenario.slots
        let recorded = scenario.workflows.flatMap { w -> [UInt64] in
            if case .recorded(let shape) = w.shape { shape.catalogue } else { [] }
        }
        settings.catalogue = ModelledKeys.all + recorded + (runner?.catalogue ?? [])
        if let objects = scenario.objects { settings.placement.replicas = objects.replicas }
        adjust(&settings)
        report = SimulationReport(
            scenario: scenario.name, seed: seed, peers: scenario.peers, virtualSeconds: 0, events: 0,
            network: NetworkStatistics(), faultsInjected: [], statusChanges: 0, convergedAfterSeconds: nil,
            invariantsChecked: [], violations: [])
        trace = recordTrace ? TraceRecorder() : nil
    }

    /// Runs the scenario to its end and checks the invariants.
    public mutating func run() -> SimulationReport {
        begin()
        _ = advance { !$0.scenario.runToEnd && $0.settled }
        return end()
    }

    /// Whether the run has nothing left to show: membership converged after the last fault and
    /// every workflow ended (a scenario with objects runs to its end).
    public var settled: Bool {
        report.convergedAfterSeconds != nil && allWorkflowsEnded && now >= lastFaultTime && scenario.objects == nil
    }

    /// Schedules the peers' starts, the faults, the scenario's workflows and objects: the start
    /// of a run (`run()`, or a client's program driving it with `advance`).
    public mutating func begin() {
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
        for (i, w) in scenario.workflows.enumerated() {
            let spec = w.spec
            // Scenario files and shapes are checked before a run; a plan that fails here is a bug.
            let plan: WorkflowPlan
            do { plan = try WorkflowPlan(spec, open: w.adaptive != nil) } catch { preconditionFailure("workflow \(spec.name): \(error)") }
            workflows.append(
                Tracked(
                    spec: spec, plan: plan, program: w.program, adaptive: w.adaptive, expected: nil,
                    outcome: WorkflowOutcome(
                        name: spec.name, tasks: plan.taskCount, status: .notSubmitted, owners: [w.submitter])))
            queue.schedule(.submit(i), at: Instant(nanoseconds: Int64(w.atSeconds * 1e9)))
        }
        if let objects = scenario.objects {
            report.objects = ObjectStatistics()
            for n in 0..<objects.puts {
                queue.schedule(.put(n), at: Instant(nanoseconds: Int64((objects.startSeconds + objects.everySeconds * Double(n)) * 1e9)))
            }
        }
        // Check convergence every protocol period once the last fault is past.
        queue.schedule(.check, at: max(settledSince, lastFaultTime) + settings.membership.protocolPeriod)
    }

    /// Plays events in time order until `done` holds (asked after each) or the scenario's end;
    /// returns whether `done` held.
    public mutating func advance(until done: (borrowing ClusterSimulation) -> Bool) -> Bool {
        let end = Instant.zero + scenario.duration
        while let next = queue.nextTime, next <= end, let (time, event) = queue.pop() {
            now = time
            report.events += 1
            handle(event)
            if done(self) { return true }
        }
        return done(self)
    }

    /// Ends the run: checks the invariants and reports.
    public mutating func end() -> SimulationReport {
        finish()
        return report
    }

    /// The virtual time of the run so far.
    public var virtualTime: Instant { now }

    // MARK: Programs of a client

    /// What a client's program was answered.
    public enum ProgramAnswer: Sendable, Hashable, Codable {
        /// The bytes of the value it waited on.
        case value([UInt8])
        /// The value it waited on has none (its writer failed; ignored, or for good).
        case noValue
        /// Its barrier was passed.
        case barrier
    }

    /// A client's program (a Swift program against the simulated cluster) submits an open
    /// workflow at peer `submitter` now: its first data's bytes. Returns the workflow's index.
    /// Its batches follow with `extendProgram`, its waits with `waitProgram`, its end with
    /// `closeProgram`; tasks take `taskMicros` of virtual time each. With `expected` (the local
    /// engine's run of the same program), every answer must be the local run's, and the workflow
    /// must complete exactly when the local run did.
    public mutating func submitProgram(
        name: String, submitter: Int, initial: [[UInt8]], taskMicros: Int64, expected: ProgramWorkflow.Expected? = nil
    ) -> Int {
        let w = workflows.count
        let spec = WorkflowSpec(name: name, dataCount: initial.count, initialBytes: 0, tasks: [])
        let plan = try! WorkflowPlan(spec, open: true)  // no call yet: it always fits
        var tracked = Tracked(
            spec: spec, plan: plan, program: ProgramWorkflow(spec: spec, initial: initial, outputs: [], expected: expected),
            expected: nil,
            outcome: WorkflowOutcome(name: name, tasks: 0, status: .notSubmitted, owners: [submitter]))
        tracked.client = (submitter: submitter, taskMicros: taskMicros)
        workflows.append(tracked)
        submitAt(w, submitter: submitter)
        return w
    }

    /// A batch of the client's program: `initial` are the bytes of the data it defined since its
    /// last batch (their indices follow), `calls` its calls.
    public mutating func extendProgram(_ w: Int, calls: [WorkflowTaskSpec], initial: [[UInt8]]) {
        guard let client = workflows[w].client, workflows[w].outcome.status == .unfinished, let wf = workflows[w].id else {
            return
        }
        var calls = calls
        for i in calls.indices { calls[i].cost = .microseconds(client.taskMicros) }
        workflows[w].record(calls, newData: initial.count)
        let p = PeerID(raw: UInt64(client.submitter))
        let values = initial.map(PayloadDigest.value(of:))
        for (bytes, value) in zip(initial, values) { peers[client.submitter].shell!.payloads.keep(bytes, as: value, for: wf) }
        step(p, .extend(workflow: wf, calls: calls, initial: values))
    }

    /// The client's program waits on `datum`: the request whose answer `answer(_:request:)` gives.
    /// A wait the program did not write itself (its client's, to persist the value) is not
    /// compared with the local run's answers (`compared: false`).
    public mutating func waitProgram(_ w: Int, datum: Int, compared: Bool = true) -> UInt64 {
        nextClientRequest += 1
        if !compared { workflows[w].uncompared.insert(nextClientRequest) }
        guard let client = workflows[w].client, workflows[w].outcome.status == .unfinished, let wf = workflows[w].id else {
            return nextClientRequest
        }
        workflows[w].spec.marks.append(.init(beforeTask: workflows[w].spec.tasks.count, .wait(datum: Int32(datum))))
        step(PeerID(raw: UInt64(client.submitter)), .wait(workflow: wf, datum: datum, requestID: nextClientRequest))
        return nextClientRequest
    }

    /// The client's program waits for every task it submitted so far.
    public mutating func barrierProgram(_ w: Int) -> UInt64 {
        nextClientRequest += 1
        guard let client = workflows[w].client, workflows[w].outcome.status == .unfinished, let wf = workflows[w].id else {
            return nextClientRequest
        }
        step(PeerID(raw: UInt64(client.submitter)), .barrier(workflow: wf, requestID: nextClientRequest))
        return nextClientRequest
    }

    /// The client's program ended: no call follows.
    public mutating func closeProgram(_ w: Int) {
        guard let client = workflows[w].client, workflows[w].outcome.status == .unfinished, let wf = workflows[w].id else {
            return
        }
        workflows[w].closed = true
        step(PeerID(raw: UInt64(client.submitter)), .close(workflow: wf))
    }

    /// Request `rid` of client program `w` was answered: checked against its local run's answer.
    mutating func clientAnswered(_ w: Int, _ rid: UInt64, _ answer: ProgramAnswer) {
        guard workflows[w].answers[rid] == nil else { return }
        workflows[w].answers[rid] = answer
        guard workflows[w].uncompared.remove(rid) == nil else { return }
        let k = workflows[w].answerCount
        workflows[w].answerCount += 1
        guard let expected = workflows[w].program?.expected, workflows[w].answersMatch else { return }
        guard k < expected.answers.count, expected.answers[k] == answer else {
            workflows[w].answersMatch = false
            func shown(_ a: ProgramAnswer?) -> String {
                switch a {
                case .value(let bytes)?: "a value of \(bytes.count) bytes (digest \(String(PayloadDigest.of(bytes), radix: 16)))"
                case .noValue?: "no value"
                case .barrier?: "a barrier"
                case nil: "nothing (it asked fewer times)"
                }
            }
            violation(
                "wrong results",
                "request \(k + 1) of \(workflows[w].plan.name) was answered \(shown(answer)), but the local run's was \(shown(k < expected.answers.count ? expected.answers[k] : nil))")
            return
        }
    }

    /// Request ids from here on are client programs' object requests (the scenario's own puts
    /// count from 1).
    static let clientRequests: UInt64 = 1 << 62

    /// What a client program's object request was answered.
    public enum ObjectAnswer: Sendable, Hashable {
        /// The put is on every replica's disk, as this version.
        case stored(ObjectVersion)
        /// The newest version found, and its bytes.
        case found([UInt8], ObjectVersion)
        case notFound
        case failed(String)
    }

    /// A client program at `peer` persists `bytes` as the object `name` (to its R replicas): the
    /// request whose answer `objectAnswer(_:)` gives.
    public mutating func putObject(at peer: Int, name: String, bytes: [UInt8]) -> UInt64 {
        let value = ObjectValue(bytes: UInt64(bytes.count), content: PayloadDigest.of(bytes))
        return objectRequest(at: peer) { sim, rid in
            sim.peers[peer].shell!.payloads.keepObject(bytes, content: value.content)
            return .put(requestID: rid, key: ObjectKey.of(name: name), value: value)
        }
    }

    /// A client program at `peer` reads the object `name` (its newest version on a live replica).
    public mutating func getObject(at peer: Int, name: String) -> UInt64 {
        objectRequest(at: peer) { _, rid in .get(requestID: rid, key: ObjectKey.of(name: name)) }
    }

    /// A new object request at `peer`: the event `request` makes of its id goes to the peer's
    /// machine, or the request fails at once if the peer is down.
    private mutating func objectRequest(
        at peer: Int, _ request: (inout ClusterSimulation, UInt64) -> PeerEvent
    ) -> UInt64 {
        let rid = nextObjectRequest
        nextObjectRequest += 1
        guard peers[peer].up else {
            objectAnswers[rid] = .failed("p\(peer) is down")
            return rid
        }
        let event = request(&self, rid)
        step(PeerID(raw: UInt64(peer)), event)
        return rid
    }

    public func objectAnswer(_ rid: UInt64) -> ObjectAnswer? { objectAnswers[rid] }

    /// The answer to request `request` of workflow `w`'s program, once there is one.
    public func answer(_ w: Int, request: UInt64) -> ProgramAnswer? { workflows[w].answers[request] }

    /// How workflow `w` stands (or ended).
    public func outcome(ofWorkflow w: Int) -> WorkflowOutcome { workflows[w].outcome }

    /// The Chrome trace-event JSON of the run (if recorded).
    public var traceJSON: String? { trace?.json() }

    /// Asked after every event once membership converged: reads each status in place (a closure
    /// over the elements copied every workflow's plan and program, a tenth of a million-task run).
    var allWorkflowsEnded: Bool {
        workflows.indices.allSatisfy { workflows[$0].outcome.status == .completed || workflows[$0].outcome.status == .failed }
    }

    // MARK: Events

    /// Whether `p` is up and still the process (`generation`) an event was meant for: what was
    /// sent to, scheduled by or run on a process that crashed is lost with it.
    func isRunning(_ p: PeerID, _ generation: UInt32) -> Bool {
        let i = Int(p.raw)
        return peers[i].up && peers[i].generation == generation
    }

    mutating func handle(_ event: Event) {
        switch event {
        case .start(let p):
            startPeer(p)
        case .deliver(let to, let generation, let from, let message, let payloads):
            guard isRunning(to, generation) else { return }
            let shell = peers[Int(to.raw)].shell!
            shell.receive(message, payloads: payloads, from: from, now: now, host: &self)
        case .timer(let p, let generation, let timer):
            guard isRunning(p, generation) else { return }
            step(p, .timer(timer))
        case .executed(let p, let generation, let task, let outputs):
            guard isRunning(p, generation) else { return }
            step(p, .executed(task: task, outputs: outputs))
        case .failed(let p, let generation, let task, let failure):
            guard isRunning(p, generation) else { return }
            step(p, .failed(task: task, failure: failure))
        case .submit(let w):
            submit(w)
        case .programStep(let w, let value):
            programStep(w, after: value)
        case .programBarrier(let w, let rid, let p):
            guard workflows[w].outcome.status == .unfinished, peers[Int(p.raw)].up else { return }
            barrierReached(w, requestID: rid, at: p)
        case .programClose(let w):
            guard workflows[w].outcome.status == .unfinished, let wf = workflows[w].id else { return }
            workflows[w].closed = true
            step(PeerID(raw: UInt64(scenario.workflows[w].submitter)), .close(workflow: wf))
        case .put(let n):
            put(n)
        case .fault(let fault):
            apply(fault)
            if trace != nil {
                // Where each workflow's record copies are when a fault strikes: what a takeover
                // after it can start from.
                for w in workflows.indices {
                    let holders = peers.indices.filter { i in
                        workflows[w].id.map { peers[i].machine?.work.backedUpWorkflows.contains($0) == true } == true
                    }
                    let names = holders.map { "p\($0)" }.joined(separator: " ")
                    trace?.instant("backup records of workflow \(w + 1): \(names)", peer: nil, at: now)
                }
            }
        case .check:
            if report.convergedAfterSeconds == nil {
                if converged() {
                    report.convergedAfterSeconds = (now - settledSince).seconds
                } else {
                    queue.schedule(.check, at: now + settings.membership.protocolPeriod)
                }
            }
        }
    }

    mutating func startPeer(_ p: PeerID) {
        let i = Int(p.raw)
        peers[i].generation &+= 1
        peers[i].up = true
        peers[i].everStarted = true
        let machine = PeerMachine(id: p, settings: settings, seed: generator.next())
        // A memory shard never fails to read.
        let shell = try! PeerShell(machine: machine, shard: peers[i].shard, maxHeldBytes: Int(clamping: scenario.maxHeldBytes))
        peers[i].shell = shell
        let seeds = (0..<min(scenario.seeds, scenario.peers)).map { PeerID(raw: UInt64($0)) }.filter { $0 != p }
        trace?.instant("start", peer: p, at: now)
        let recovered = shell.start(seeds: seeds, now: now, host: &self)
        if recovered.objects > 0 { trace?.instant("recovered \(recovered.objects) objects from the store", peer: p, at: now) }
        if recovered.records > 0 {
            trace?.instant("recovered \(recovered.records) workflow records from the store", peer: p, at: now)
        }
    }

    mutating func submit(_ w: Int) { submitAt(w, submitter: scenario.workflows[w].submitter) }

    /// Submits workflow `w` at `submitter` now.
    mutating func submitAt(_ w: Int, submitter: Int) {
        workflows[w].submittedAt = now
        guard submitter < peers.count, peers[submitter].up else {
            workflows[w].outcome.status = .failed
            workflows[w].outcome.reason = "its submitter p\(submitter) was down"
            return
        }
        let wf = peers[submitter].shell!.newWorkflowID()
        workflows[w].id = wf
        workflowIndex[wf] = w
        workflows[w].outcome.status = .unfinished
        let plan = workflows[w].plan
        let initial: [DataValue]
        if let program = workflows[w].program {
            initial = program.initial.map(PayloadDigest.value(of:))
            for (bytes, value) in zip(program.initial, initial) { peers[submitter].shell!.payloads.keep(bytes, as: value, for: wf) }
        } else {
            initial = (0..<plan.dataCount).map {
                DataValue(bytes: plan.initialBytes, content: WorkflowPlan.initialContent(workflow: wf.raw, datum: $0))
            }
        }
        trace?.instant("submit \(plan.name)", peer: PeerID(raw: UInt64(submitter)), at: now)
        step(PeerID(raw: UInt64(submitter)), .submit(workflow: wf, plan: plan, initial: initial))
        if workflows[w].adaptive != nil { programStep(w, after: nil) }
    }

    /// The growing program of workflow `w` submits its next batch and waits (it runs at its
    /// submitter, which owns the workflow).
    mutating func programStep(_ w: Int, after value: UInt64?) {
        guard workflows[w].outcome.status == .unfinished, let wf = workflows[w].id, let program = workflows[w].adaptive else {
            return
        }
        let submitter = scenario.workflows[w].submitter
        let cost = Interval.microseconds(scenario.workflows[w].taskMicros)
        let bytes = scenario.workflows[w].bytes
        let dataCount = workflows[w].spec.dataCount
        guard let next = program.step(round: workflows[w].round, dataCount: dataCount, after: value, cost: cost, bytes: bytes)
        else { return }
        workflows[w].round += 1
        let initial = (dataCount..<dataCount + next.newData).map {
            DataValue(bytes: bytes, content: WorkflowPlan.initialContent(workflow: wf.raw, datum: $0))
        }
        workflows[w].record(next.calls, newData: next.newData)
        workflows[w].spec.marks.append(.init(beforeTask: workflows[w].spec.tasks.count, .wait(datum: Int32(next.waitOn))))
        let p = PeerID(raw: UInt64(submitter))
        let rid = UInt64(workflows[w].round)
        workflows[w].pendingWait = (rid, next.waitOn, next.closesAfter)
        step(p, .extend(workflow: wf, calls: next.calls, initial: initial))
        if next.barrier {
            workflows[w].pendingBarrier = rid
            step(p, .barrier(workflow: wf, requestID: rid))
        } else {
            step(p, .wait(workflow: wf, datum: next.waitOn, requestID: rid))
        }
    }

    /// The barrier of workflow `w`'s program was reached at owner `p`: every task submitted so far
    /// must be done there (applied more often than re-opened); then the program waits.
    mutating func barrierReached(_ w: Int, requestID: UInt64, at p: PeerID) {
        guard workflows[w].pendingBarrier == requestID, let wait = workflows[w].pendingWait else { return }
        workflows[w].pendingBarrier = nil
        let i = Int(p.raw)
        let applied = workflows[w].applied[i] ?? [], reopened = workflows[w].reopened[i] ?? []
        let notDone = (0..<workflows[w].spec.tasks.count).filter { t in
            (t < applied.count ? Int(applied[t]) : 0) <= (t < reopened.count ? Int(reopened[t]) : 0)
        }
        if !notDone.isEmpty {
            violation(
                "barrier reached too soon",
                "the program of \(workflows[w].plan.name) passed a barrier at \(p) with \(notDone.count) tasks not done (task \(notDone[0]) first)")
        }
        step(p, .wait(workflow: workflows[w].id!, datum: wait.datum, requestID: wait.requestID))
    }

    /// A wait of workflow `w`'s program was answered: the value must be the program's own, then
    /// the program goes on (a moment later) or closes.
    mutating func answered(_ w: Int, requestID: UInt64, value: DataValue?, at p: PeerID) {
        guard let pending = workflows[w].pendingWait, pending.requestID == requestID else { return }
        workflows[w].pendingWait = nil
        let expected = ModelledProgram.run(workflows[w].spec, workflow: workflows[w].id!.raw).results[pending.datum]
        guard let value, expected == .content(value.content) else {
            violation(
                "wait answered wrongly",
                "the program of \(workflows[w].plan.name) waited on datum \(pending.datum) and got \(value.map { "\($0.content)" } ?? "no value") at \(p), not its own \(expected)")
            return
        }
        let next: Event = pending.closesAfter ? .programClose(w) : .programStep(w, value: value.content)
        queue.schedule(next, at: now + .milliseconds(1))
    }

    mutating func put(_ n: Int) {
        guard let objects = scenario.objects else { return }
        let up = peers.indices.filter { peers[$0].up }
        guard !up.isEmpty else { return }
        let coordinator = up[Int(generator.next() % UInt64(up.count))]
        let key = generator.next() % UInt64(max(1, objects.keys))
        let content = generator.next()
        let rid = UInt64(n + 1)
        pendingPuts[rid] = (key, content)
        report.objects?.putsIssued += 1
        step(
            PeerID(raw: UInt64(coordinator)),
            .put(requestID: rid, key: key, value: ObjectValue(bytes: objects.bytes, content: content)))
    }

    /// Hands `event` to peer `p`'s machine through its shell, the directive interpreter a real
    /// peer runs too (`PeerShell`); this simulation is its host.
    mutating func step(_ p: PeerID, _ event: PeerEvent) {
        let shell = peers[Int(p.raw)].shell!
        shell.step(event, now: now, host: &self)
    }

    /// Runs a task body in virtual time: the outputs (or the failure) appear after the task's
    /// modelled cost. A real body runs at once, on the bytes its shell holds (the shell hands over
    /// the call its machine gave it, as on a real peer: the program's own spec is the checker's,
    /// not the executor's); a modelled body fails its first `failingAttempts` attempts, and
    /// whenever it reads a value that is absent.
    mutating func execute(_ job: TaskJob, on shell: PeerShell) {
        let p = shell.id
        let generation = peers[Int(p.raw)].generation
        let task = job.task
        let w = workflowIndex[task.workflow]!
        let t = task.task
        // (Fields are read in place: copying a million-task plan or program per task costs dozens
        // of reference counts.)
        let cost = workflows[w].spec.tasks[t].cost
        peers[Int(p.raw)].tasksRun += 1
        trace?.complete("task \(t)", peer: p, at: now, duration: cost)
        if let prepared = job.inputBytes {
            let outcome: Result<[DataValue], TaskFailure>
            switch prepared {
            case .failure(let failure): outcome = .failure(failure)
            case .success(let inputs):
                let call = job.call!
                let result = runner!.run(
                    call.body, workflow: workflows[w].spec.name, label: call.label, accesses: call.accesses, inputs: inputs,
                    attempt: job.attempt)
                outcome = shell.finish(job, outputs: result, host: &self)
            }
            switch outcome {
            case .success(let outputs):
                queue.schedule(.executed(p, generation: generation, task: task, outputs: outputs), at: now + cost)
            case .failure(let failure):
                queue.schedule(.failed(p, generation: generation, task: task, failure: failure), at: now + cost)
            }
            return
        }
        let directions = workflows[w].spec.tasks[t].accesses.lazy.map(\.direction)
        let failingAttempts = workflows[w].spec.tasks[t].failingAttempts
        let outputBytes = workflows[w].spec.tasks[t].outputBytes
        let failure: TaskFailure? =
            if job.inputs.contains(where: { $0 == nil }) {
                TaskFailure(message: "reads an input that has no value (its writer failed and the failure was ignored)")
            } else if job.attempt <= Int(failingAttempts) {
                TaskFailure(
                    message: "modelled failure of attempt \(job.attempt)", exitStatus: 1, stderrTail: "attempt \(job.attempt) failed")
            } else {
                nil
            }
        if let failure {
            queue.schedule(.failed(p, generation: generation, task: task, failure: failure), at: now + cost)
            return
        }
        let contents = WorkflowPlan.modelledOutputs(
            task: t, catalogueKey: job.catalogueKey, directions: directions, inputs: job.inputs.map { $0!.content })
        let outputs = contents.map { DataValue(bytes: outputBytes, content: $0) }
        queue.schedule(.executed(p, generation: generation, task: task, outputs: outputs), at: now + cost)
    }

    /// Whether workflow `wf`'s values are real bytes (a program's), not modelled content.
    public func hasRealBytes(_ wf: WorkflowID) -> Bool { workflowIndex[wf].map { workflows[$0].program != nil } ?? false }

    /// The program's outcome, interpreted on its own (`ModelledProgram`), once per workflow.
    mutating func expectedOutcome(_ w: Int) -> ModelledProgram.Outcome {
        if workflows[w].expected == nil {
            workflows[w].expected = ModelledProgram.run(workflows[w].spec, workflow: workflows[w].id!.raw)
        }
        return workflows[w].expected!
    }

    mutating func completed(_ w: Int, results: [DataValue?], at shell: PeerShell) {
        let p = shell.id
        if workflows[w].program != nil {
            completedProgram(w, results: results, at: shell)
            return
        }
        let expected = expectedOutcome(w)
        // A datum without a result failed or has no value; the program says which.
        let got: [ModelledProgram.Value] = results.enumerated().map { d, value in
            value.map { .content($0.content) } ?? (expected.results[d] == .absent ? .absent : .failed)
        }
        let match = !expected.fails && got == expected.results
        if expected.fails {
            violation(
                "completed a failing program",
                "\(workflows[w].plan.name) completed at \(p), but task \(expected.failingTasks[0]) fails it")
        } else if !match {
            violation(
                "wrong results", "\(workflows[w].plan.name) completed at \(p) with results different from its sequential program's")
        }
        guard workflows[w].outcome.status != .completed else { return }  // a second owner finished too
        workflows[w].outcome.status = .completed
        workflows[w].outcome.resultsMatch = match
        workflows[w].outcome.makespanSeconds = (now - workflows[w].submittedAt).seconds
        trace?.instant("\(workflows[w].plan.name) completed", peer: p, at: now)
    }

    /// A program with real bodies completed: its outputs must be the local engine's run's.
    mutating func completedProgram(_ w: Int, results: [DataValue?], at shell: PeerShell) {
        let p = shell.id
        let program = workflows[w].program!
        var match: Bool?
        if let expected = program.expected {
            let got = program.outputs.map { results[$0.datum] }
            let answered = workflows[w].answersMatch && workflows[w].answerCount == expected.answers.count
            match = !expected.fails && got == expected.outputs && answered
            if !expected.fails && workflows[w].answersMatch && !answered {
                violation(
                    "wrong results",
                    "\(workflows[w].plan.name) completed at \(p) after \(workflows[w].answerCount) answers; its local run had \(expected.answers.count)")
            }
            if expected.fails {
                violation("completed a failing program", "\(workflows[w].plan.name) completed at \(p), but its local run failed")
            } else if got != expected.outputs {
                let differ = zip(program.outputs, zip(got, expected.outputs)).filter { $1.0 != $1.1 }.map(\.0.name)
                violation(
                    "wrong results",
                    "\(workflows[w].plan.name) completed at \(p) with outputs different from the local run's: \(differ.joined(separator: ", "))")
            }
        }
        guard workflows[w].outcome.status != .completed else { return }
        workflows[w].outcome.status = .completed
        workflows[w].outcome.resultsMatch = match
        workflows[w].outcome.makespanSeconds = (now - workflows[w].submittedAt).seconds
        workflows[w].results = results
        workflows[w].outputBytes = program.outputs.map { output in
            results[output.datum].flatMap { shell.payloads.bytes(of: $0) }
        }
        trace?.instant("\(workflows[w].plan.name) completed", peer: p, at: now)
    }

    /// The bytes of workflow `w`'s outputs once it completed, by output name (nil: it has no
    /// value), as its owner had them when it completed: a crash after that loses nothing the
    /// program was told.
    public func outputs(ofWorkflow w: Int) -> [(name: String, bytes: [UInt8]?)] {
        guard let program = workflows[w].program, workflows[w].results != nil else { return [] }
        return zip(program.outputs, workflows[w].outputBytes).map { ($0.name, $1) }
    }

    mutating func apply(_ fault: Fault) {
        report.faultsInjected.append("\(now): \(fault)")
        trace?.instant("fault: \(fault)", peer: nil, at: now)
        switch fault {
        case .crash(let p):
            let i = Int(p.raw)
            guard i < peers.count, peers[i].up else { return }
            retire(i)
            peers[i].up = false
            // A growing program runs at its submitter: it dies with it, and its open workflow
            // with it (it has no record anywhere until it closes).
            for w in workflows.indices where workflows[w].outcome.status == .unfinished && workflows[w].grows
                && workflows[w].outcome.owners.first == i && !workflows[w].closed
            {
                workflows[w].outcome.status = .failed
                workflows[w].outcome.reason = "its program ran at p\(i), which crashed before it closed the workflow"
            }
        case .restart(let p, let keepStore):
            let i = Int(p.raw)
            guard i < peers.count, !peers[i].up else { return }
            if !keepStore {
                peers[i].shard = MemoryShard()
                peers[i].emptyUntil = now + .seconds(5)
            }
            startPeer(p)  // its shell recovers what the shard kept
        case .partition, .heal, .setDrop, .setDuplicate:
            network.apply(fault)
        }
        settledSince = max(settledSince, now)
        if report.objects != nil {
            let down = peers.indices.filter { peers[$0].everStarted && (!peers[$0].up || peers[$0].emptyUntil > now) }
            report.objects!.mostPeersDown = max(report.objects!.mostPeersDown, down.count)
        }
    }

    /// Adds a peer's counters to the run's before its process goes away; its owner counts go too.
    mutating func retire(_ i: Int) {
        addCounters(of: i)
        peers[i].shell = nil
        for w in workflows.indices {
            workflows[w].applied[i] = nil
            workflows[w].reopened[i] = nil
        }
    }

    /// Adds a peer's machine counters to the run's totals.
    mutating func addCounters(of i: Int) {
        guard let shell = peers[i].shell else { return }
        let m = shell.machine
        report.corruptPayloads += shell.counters.corruptPayloads
        report.missingPayloads += shell.counters.missingPayloads
        report.payloadsRefused += shell.counters.payloadsRefused
        report.work.add(m.work.counters)
        report.steal.add(m.steal.counters)
        report.membership.add(m.membership.counters)
        report.placement.add(m.placement.counters)
        report.objects?.transfers += m.placement.counters.transfersSent
        report.objects?.bytesTransferred &+= m.placement.counters.bytesTransferred
        report.objects?.corruptTransfers += m.placement.counters.corruptTransfers
    }

    /// Records a violation; after a few of one kind, only counts them (one bug can repeat a
    /// thousand times).
    mutating func violation(_ kind: String, _ text: String) {
        violationCounts[kind, default: 0] += 1
        let n = violationCounts[kind]!
        if n <= 3 {
            report.violations.append(text)
        } else if n == 4 {
            report.violations.append("(more '\(kind)' violations follow; counted at the end)")
        }
    }

    // MARK: Invariants

    /// Every live peer sees every live peer alive and every crashed peer dead (or left).
    func converged() -> Bool {
        let live = peers.indices.filter { peers[$0].up }
        for i in live {
            guard let m = peers[i].machine?.membership else { return false }
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
        var unfinished: [Int: [String]] = [:]
        for i in peers.indices where peers[i].up {
            for w in workflows.indices {
                if let id = workflows[w].id, let p = peers[i].machine?.work.progress(of: id) {
                    unfinished[w, default: []].append("owner p\(i): \(p) [jobs: \(peers[i].machine!.work.runningJobs)]")
                }
            }
        }
        checkObjects()
        for i in peers.indices where peers[i].up { addCounters(of: i) }  // the machines stay, for inspection
        let ran = peers.filter(\.everStarted).map(\.tasksRun).sorted()
        if !workflows.isEmpty, let least = ran.first, let most = ran.last {
            report.tasksPerPeer = [least, ran[ran.count / 2], most]
        }
        report.invariantsChecked.append("membership converges within \(scenario.convergeWithinSeconds) s after the last fault heals")
        if let after = report.convergedAfterSeconds {
            if after > scenario.convergeWithinSeconds {
                report.violations.append(
                    "membership converged only \(after) s after the last fault (limit \(scenario.convergeWithinSeconds) s)")
            }
        } else {
            if let (who, what) = firstDisagreement() {
                report.violations.append("membership never converged: \(who) \(what)")
            } else {
                // Every view agrees now, but no convergence check ran after the last fault (the
                // run ended within one protocol period of it).
                report.violations.append(
                    "membership was never checked after the last fault: the run ended too soon after it to tell")
            }
        }
        for kind in violationCounts.keys.sorted() where violationCounts[kind]! > 3 {
            report.violations.append("\(violationCounts[kind]!) '\(kind)' violations in all")
        }
        guard !workflows.isEmpty else { return }
        report.invariantsChecked.append(
            "every workflow ends with its sequential program's results or fails with a reason")
        report.invariantsChecked.append("no task's result is applied twice by its owner")
        for w in workflows.indices {
            report.workflows.append(workflows[w].outcome)
            switch workflows[w].outcome.status {
            case .completed, .failed: break
            case .unfinished, .notSubmitted:
                let owners = unfinished[w].map { $0.joined(separator: "; ") } ?? "no live owner"
                report.violations.append(
                    "\(workflows[w].plan.name) did not end within the run (\(scenario.durationSeconds) s): \(owners)")
            }
        }
    }

    /// No acknowledged persistent object is lost while fewer than R of its replicas are down; by
    /// the end (if the faults stopped long enough before), every one is on all its R replicas.
    mutating func checkObjects() {
        guard let objects = scenario.objects, report.objects != nil else { return }
        let up = peers.indices.filter { peers[$0].up }.map { PeerID(raw: UInt64($0)) }
        report.objects!.objectsAcknowledged = acknowledged.count
        let r = objects.replicas
        let durable = report.objects!.mostPeersDown < r
        let settled = (now - lastFaultTime) >= .seconds(10)
        if durable {
            report.invariantsChecked.append("no acknowledged object is lost while fewer than R=\(r) peers are down")
        } else {
            report.invariantsChecked.append(
                "object durability not checked: \(report.objects!.mostPeersDown) peers were down at once (R=\(r))")
        }
        if durable && settled {
            report.invariantsChecked.append("every acknowledged object is on its R current replicas at the end")
        }
        for key in acknowledged.keys.sorted() {
            let (version, content) = acknowledged[key]!
            let holders = up.filter { p in
                guard let o = peers[Int(p.raw)].machine?.placement.held(key) else { return false }
                return o.version > version || (o.version == version && o.value.content == content)
            }
            if !holders.isEmpty { report.objects!.objectsFound += 1 }
            guard durable else { continue }
            if holders.isEmpty {
                let copies = peers.indices.compactMap { i -> String? in
                    let held = peers[i].machine?.placement.held(key).map { "\($0.version)" }
                    let disk = (try? peers[i].shard.get(ObjectRecord.key(key), in: .objects)).flatMap { $0 }
                        .flatMap(ObjectRecord.decode).map { "\($0.version)" }
                    return held == nil && disk == nil ? nil : "p\(i): \(held ?? "-") (disk \(disk ?? "-"))"
                }
                violation(
                    "object lost",
                    "acknowledged object \(key) (version \(version)) is held by no live peer; copies: \(copies.joined(separator: ", "))")
            } else if settled {
                let replicas = Rendezvous.replicas(of: key, among: up, count: r)
                let missing = replicas.filter { !holders.contains($0) }
                if !missing.isEmpty {
                    violation(
                        "object under-replicated",
                        "acknowledged object \(key) (version \(version)) is missing on replicas \(missing) at the end")
                }
            }
        }
    }

    func firstDisagreement() -> (String, String)? {
        for i in peers.indices where peers[i].up {
            guard let m = peers[i].machine?.membership else { continue }
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

    /// A span: `name` ran on `peer` from `time` for `duration`.
    mutating func complete(_ name: String, peer: PeerID, at time: Instant, duration: Interval) {
        events.append(
            "{\"name\":\"\(name)\",\"ph\":\"X\",\"pid\":1,\"tid\":\(Int(peer.raw) + 1),\"ts\":\(time.nanoseconds / 1000),\"dur\":\(max(1, duration.nanoseconds / 1000))}")
    }

    func json() -> String {
        "{\"traceEvents\":[\n" + events.joined(separator: ",\n") + "\n]}\n"
    }
}
