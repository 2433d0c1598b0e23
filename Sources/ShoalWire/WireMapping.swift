import Foundation
import ShoalCore

/// The machines' messages to and from their protobuf form. Encoding is total; decoding checks
/// what the protobuf cannot (enum values it does not know, counts that do not fit the machines'
/// integers, columns of unequal length, a plan the renaming refuses) and throws `WireError.invalid`.
/// The machines check the rest (`WorkMachine.acceptable` and the like), as they do for any peer.
public enum WireMapping {
    typealias E = WireError

    // MARK: Peer messages, both ways

    static func put(_ m: PeerMessage, contacts: [WireContact], into envelope: inout WireEnvelope) {
        switch m {
        case .membership(let m):
            var p = membership(m)
            p.contacts = contacts
            envelope.membership = p
        case .steal(let m): envelope.steal = steal(m)
        case .work(let m): envelope.work = work(m)
        case .placement(let m): envelope.placement = placement(m)
        }
    }

    // MARK: Shared shapes

    static func value(_ v: ObjectValue) -> Shoal_Wire_V1_Value {
        var p = Shoal_Wire_V1_Value()
        p.bytes = v.bytes
        p.content = v.content
        p.checksum = v.checksum
        return p
    }
    static func value(_ p: Shoal_Wire_V1_Value) -> ObjectValue {
        ObjectValue(bytes: p.bytes, content: p.content, checksum: p.checksum)
    }

    static func task(_ t: TaskRef) -> Shoal_Wire_V1_TaskRef {
        var p = Shoal_Wire_V1_TaskRef()
        p.workflow = t.workflow.raw
        p.index = t.index
        return p
    }
    static func task(_ p: Shoal_Wire_V1_TaskRef) -> TaskRef { TaskRef(WorkflowID(raw: p.workflow), Int(p.index)) }
    static func tasks(_ ts: [TaskRef]) -> Shoal_Wire_V1_Tasks {
        var p = Shoal_Wire_V1_Tasks()
        p.tasks = ts.map(task)
        return p
    }

    static func version(_ v: VersionRef) -> Shoal_Wire_V1_VersionRef {
        var p = Shoal_Wire_V1_VersionRef()
        p.workflow = v.workflow.raw
        p.index = v.index
        return p
    }
    static func version(_ p: Shoal_Wire_V1_VersionRef) -> VersionRef { VersionRef(WorkflowID(raw: p.workflow), Int(p.index)) }

    static func direction(_ d: Direction) -> Shoal_Wire_V1_Direction {
        switch d {
        case .in: .in
        case .out: .out
        case .inout: .inout
        case .commutative: .commutative
        case .concurrent: .concurrent
        }
    }
    static func direction(_ p: Shoal_Wire_V1_Direction) throws(E) -> Direction {
        switch p {
        case .in: .in
        case .out: .out
        case .inout: .inout
        case .commutative: .commutative
        case .concurrent: .concurrent
        case .UNRECOGNIZED(let n): throw .invalid("direction \(n)")
        }
    }

    static func access(_ a: WorkflowTaskSpec.Access) -> Shoal_Wire_V1_Access {
        var p = Shoal_Wire_V1_Access()
        p.datum = a.datum
        p.direction = direction(a.direction)
        return p
    }
    static func access(_ p: Shoal_Wire_V1_Access) throws(E) -> WorkflowTaskSpec.Access {
        WorkflowTaskSpec.Access(Int(p.datum), try direction(p.direction))
    }

    static func body(_ b: TaskBody) -> Shoal_Wire_V1_Body {
        var p = Shoal_Wire_V1_Body()
        switch b {
        case .modelled: p.modelled = Shoal_Wire_V1_Modelled()
        case .registered(let name, let arguments):
            var r = Shoal_Wire_V1_Registered()
            r.name = name
            r.arguments = Data(arguments)
            p.registered = r
        case .exec(let command): p.exec = command
        }
        return p
    }
    static func body(_ p: Shoal_Wire_V1_Body) throws(E) -> TaskBody {
        switch p.kind {
        case .modelled: return .modelled
        case .registered(let r): return .registered(name: r.name, arguments: Array(r.arguments))
        case .exec(let command): return .exec(command: command)
        case nil: throw .invalid("a task body of no kind")
        }
    }

    static func call(_ c: ExecutableCall) -> Shoal_Wire_V1_Call {
        var p = Shoal_Wire_V1_Call()
        p.body = body(c.body)
        p.accesses = c.accesses.map(access)
        p.label = c.label
        return p
    }
    static func call(_ p: Shoal_Wire_V1_Call) throws(E) -> ExecutableCall {
        var accesses: [WorkflowTaskSpec.Access] = []
        accesses.reserveCapacity(p.accesses.count)
        for a in p.accesses { accesses.append(try access(a)) }
        return ExecutableCall(body: try body(p.body), accesses: accesses, label: p.label)
    }

    static func action(_ a: FailureAction) -> Shoal_Wire_V1_FailureAction {
        switch a {
        case .fail: .fail
        case .ignore: .ignore
        case .cancelSuccessors: .cancelSuccessors
        }
    }
    static func action(_ p: Shoal_Wire_V1_FailureAction) throws(E) -> FailureAction {
        switch p {
        case .fail: .fail
        case .ignore: .ignore
        case .cancelSuccessors: .cancelSuccessors
        case .UNRECOGNIZED(let n): throw .invalid("failure action \(n)")
        }
    }

    static func failure(_ f: TaskFailure) -> Shoal_Wire_V1_Failure {
        var p = Shoal_Wire_V1_Failure()
        p.message = f.message
        if let s = f.exitStatus { p.exitStatus = s }
        p.stderrTail = f.stderrTail
        return p
    }
    static func failure(_ p: Shoal_Wire_V1_Failure) -> TaskFailure {
        TaskFailure(message: p.message, exitStatus: p.hasExitStatus ? p.exitStatus : nil, stderrTail: p.stderrTail)
    }

    public static func report(_ r: FailureReport) -> Shoal_Wire_V1_FailureReport {
        var p = Shoal_Wire_V1_FailureReport()
        p.task = UInt32(clamping: r.task)
        p.label = r.label
        p.failure = failure(r.failure)
        p.attempts = UInt32(clamping: r.attempts)
        p.action = action(r.action)
        return p
    }

    // MARK: Membership

    public static func status(_ s: MemberStatus) -> Shoal_Wire_V1_MemberStatus {
        switch s {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        }
    }
    public static func status(_ p: Shoal_Wire_V1_MemberStatus) throws(WireError) -> MemberStatus {
        switch p {
        case .alive: .alive
        case .suspect: .suspect
        case .dead: .dead
        case .left: .left
        case .UNRECOGNIZED(let n): throw .invalid("member status \(n)")
        }
    }

    public static func load(_ load: PeerLoad) -> Shoal_Wire_V1_Load {
        var l = Shoal_Wire_V1_Load()
        l.freeSlots = load.freeSlots
        l.readyTasks = load.readyTasks
        l.storedBytes = load.storedBytes
        l.catalogue = load.catalogue
        return l
    }

    static func update(_ u: MemberUpdate) -> Shoal_Wire_V1_MemberUpdate {
        var p = Shoal_Wire_V1_MemberUpdate()
        p.peer = u.peer.raw
        p.status = status(u.status)
        p.incarnation = u.incarnation
        if u.load != PeerLoad() { p.load = load(u.load) }
        p.loadVersion = u.loadVersion
        return p
    }
    static func update(_ p: Shoal_Wire_V1_MemberUpdate) throws(E) -> MemberUpdate {
        MemberUpdate(
            peer: PeerID(raw: p.peer), status: try status(p.status), incarnation: p.incarnation,
            load: PeerLoad(
                freeSlots: p.load.freeSlots, readyTasks: p.load.readyTasks, storedBytes: p.load.storedBytes,
                catalogue: p.load.catalogue),
            loadVersion: p.loadVersion)
    }
    static func updates(_ ps: [Shoal_Wire_V1_MemberUpdate]) throws(E) -> [MemberUpdate] {
        var out: [MemberUpdate] = []
        out.reserveCapacity(ps.count)
        for p in ps { out.append(try update(p)) }
        return out
    }
    static func updates(_ us: [MemberUpdate]) -> Shoal_Wire_V1_Updates {
        var p = Shoal_Wire_V1_Updates()
        p.updates = us.map(update)
        return p
    }
    static func probe(_ sequence: UInt64, _ us: [MemberUpdate]) -> Shoal_Wire_V1_Probe {
        var p = Shoal_Wire_V1_Probe()
        p.sequence = sequence
        p.updates = us.map(update)
        return p
    }

    static func membership(_ m: MembershipMessage) -> Shoal_Wire_V1_Membership {
        var p = Shoal_Wire_V1_Membership()
        switch m {
        case .ping(let s, let u): p.ping = probe(s, u)
        case .ack(let s, let u): p.ack = probe(s, u)
        case .pingRequest(let s, let target, let u):
            var r = Shoal_Wire_V1_PingRequest()
            r.sequence = s
            r.target = target.raw
            r.updates = u.map(update)
            p.pingRequest = r
        case .join(let u): p.join = updates(u)
        case .joinReply(let u): p.joinReply = updates(u)
        case .sync(let digest, let u):
            var s = Shoal_Wire_V1_Sync()
            s.digest = digest
            s.updates = u.map(update)
            p.sync = s
        case .syncReply(let u): p.syncReply = updates(u)
        }
        return p
    }
    static func membership(_ p: Shoal_Wire_V1_Membership) throws(E) -> MembershipMessage {
        switch p.kind {
        case .ping(let r): return .ping(sequence: r.sequence, updates: try updates(r.updates))
        case .ack(let r): return .ack(sequence: r.sequence, updates: try updates(r.updates))
        case .pingRequest(let r):
            return .pingRequest(sequence: r.sequence, target: PeerID(raw: r.target), updates: try updates(r.updates))
        case .join(let r): return .join(updates: try updates(r.updates))
        case .joinReply(let r): return .joinReply(members: try updates(r.updates))
        case .sync(let r): return .sync(digest: r.digest, updates: try updates(r.updates))
        case .syncReply(let r): return .syncReply(members: try updates(r.updates))
        case nil: throw .invalid("a membership message of no kind")
        }
    }

    // MARK: Stealing

    static func location(_ l: DataLocation) -> Shoal_Wire_V1_DataLocation {
        var p = Shoal_Wire_V1_DataLocation()
        p.datum = version(l.datum)
        p.bytes = l.bytes
        p.holder = l.holder.raw
        p.checksum = l.checksum
        p.absent = l.absent
        return p
    }
    static func location(_ p: Shoal_Wire_V1_DataLocation) -> DataLocation {
        DataLocation(
            datum: version(p.datum), bytes: p.bytes, holder: PeerID(raw: p.holder), checksum: p.checksum, absent: p.absent)
    }

    static func stealable(_ t: StealableTask) -> Shoal_Wire_V1_StealableTask {
        var p = Shoal_Wire_V1_StealableTask()
        p.id = task(t.id)
        p.owner = t.owner.raw
        p.catalogueKey = t.catalogueKey
        p.inputs = t.inputs.map(location)
        p.outputs = t.outputs.map(version)
        p.attempt = UInt32(t.attempt)
        if let c = t.call { p.call = call(c) }
        return p
    }
    static func stealable(_ p: Shoal_Wire_V1_StealableTask) throws(E) -> StealableTask {
        guard let attempt = UInt16(exactly: p.attempt) else { throw .invalid("attempt \(p.attempt)") }
        var t = StealableTask(
            id: task(p.id), owner: PeerID(raw: p.owner), catalogueKey: p.catalogueKey, inputs: p.inputs.map(location),
            outputs: p.outputs.map(version))
        t.attempt = attempt
        if p.hasCall { t.call = try call(p.call) }
        return t
    }

    static func steal(_ m: StealMessage) -> Shoal_Wire_V1_Steal {
        var p = Shoal_Wire_V1_Steal()
        switch m {
        case .request(let rid, let max, let catalogue, let holding):
            var r = Shoal_Wire_V1_StealRequest()
            r.requestID = rid
            r.max = UInt32(clamping: max)
            r.catalogue = catalogue
            r.holding = holding.map(version)
            p.request = r
        case .reply(let rid, let granted):
            var r = Shoal_Wire_V1_StealReply()
            r.requestID = rid
            r.granted = granted.map(stealable)
            p.reply = r
        case .refused(let rid):
            var r = Shoal_Wire_V1_StealRefused()
            r.requestID = rid
            p.refused = r
        case .offer(let ready, let catalogue):
            var o = Shoal_Wire_V1_StealOffer()
            o.readyTasks = UInt32(clamping: ready)
            o.catalogue = catalogue
            p.offer = o
        }
        return p
    }
    static func steal(_ p: Shoal_Wire_V1_Steal) throws(E) -> StealMessage {
        switch p.kind {
        case .request(let r):
            return .request(
                requestID: r.requestID, max: Int(r.max), catalogue: r.catalogue, holding: r.holding.map(version))
        case .reply(let r):
            var granted: [StealableTask] = []
            granted.reserveCapacity(r.granted.count)
            for t in r.granted { granted.append(try stealable(t)) }
            return .reply(requestID: r.requestID, granted: granted)
        case .refused(let r): return .refused(requestID: r.requestID)
        case .offer(let o): return .offer(readyTasks: Int(o.readyTasks), catalogue: o.catalogue)
        case nil: throw .invalid("a steal message of no kind")
        }
    }

    // MARK: Work

    /// Calls in columns (`Calls`): one repeated field per field of a call.
    static func calls(_ tasks: [WorkflowTaskSpec]) -> Shoal_Wire_V1_Calls {
        var p = Shoal_Wire_V1_Calls()
        let n = tasks.count
        p.catalogueKey.reserveCapacity(n)
        p.costNanos.reserveCapacity(n)
        p.outputBytes.reserveCapacity(n)
        p.retries.reserveCapacity(n)
        p.action.reserveCapacity(n)
        p.failingAttempts.reserveCapacity(n)
        p.accessStart.reserveCapacity(n + 1)
        let modelled = tasks.allSatisfy { $0.body == .modelled }
        let unlabelled = tasks.allSatisfy { $0.label.isEmpty }
        var bodyIndex: [TaskBody: UInt32] = [:]
        p.accessStart.append(0)
        for t in tasks {
            p.catalogueKey.append(t.catalogueKey)
            p.costNanos.append(t.cost.nanoseconds)
            p.outputBytes.append(t.outputBytes)
            p.retries.append(UInt32(t.policy.retries))
            p.action.append(action(t.policy.action))
            p.failingAttempts.append(UInt32(t.failingAttempts))
            if !unlabelled { p.labels.append(t.label) }
            if !modelled {
                if let k = bodyIndex[t.body] {
                    p.bodyOf.append(k)
                } else {
                    let k = UInt32(p.bodies.count)
                    bodyIndex[t.body] = k
                    p.bodies.append(body(t.body))
                    p.bodyOf.append(k)
                }
            }
            for a in t.accesses {
                p.accessDatum.append(a.datum)
                p.accessDirection.append(direction(a.direction))
            }
            p.accessStart.append(UInt32(truncatingIfNeeded: p.accessDatum.count))
        }
        return p
    }
    static func calls(_ p: Shoal_Wire_V1_Calls) throws(E) -> [WorkflowTaskSpec] {
        let n = p.catalogueKey.count
        guard p.costNanos.count == n, p.outputBytes.count == n, p.retries.count == n, p.action.count == n,
            p.failingAttempts.count == n, p.labels.isEmpty || p.labels.count == n, p.bodyOf.isEmpty || p.bodyOf.count == n,
            p.bodyOf.isEmpty == p.bodies.isEmpty,
            p.accessStart.count == n + 1, p.accessDirection.count == p.accessDatum.count
        else { throw .invalid("the columns of \(n) calls have different lengths") }
        guard p.accessStart[0] == 0, Int(p.accessStart[n]) == p.accessDatum.count else {
            throw .invalid("access starts do not span the \(p.accessDatum.count) accesses")
        }
        var bodies: [TaskBody] = []
        bodies.reserveCapacity(p.bodies.count)
        for b in p.bodies { bodies.append(try body(b)) }
        var out: [WorkflowTaskSpec] = []
        out.reserveCapacity(n)
        for t in 0..<n {
            let lo = Int(p.accessStart[t]), hi = Int(p.accessStart[t + 1])
            guard lo <= hi, hi <= p.accessDatum.count else {
                throw .invalid("access starts of call \(t) go backwards or past the \(p.accessDatum.count) accesses")
            }
            guard let retries = UInt16(exactly: p.retries[t]), let failing = UInt16(exactly: p.failingAttempts[t]) else {
                throw .invalid("retries or failing attempts of call \(t) out of range")
            }
            var accesses: [WorkflowTaskSpec.Access] = []
            accesses.reserveCapacity(hi - lo)
            for k in lo..<hi { accesses.append(.init(Int(p.accessDatum[k]), try direction(p.accessDirection[k]))) }
            var spec = WorkflowTaskSpec(
                catalogueKey: p.catalogueKey[t], cost: Interval(nanoseconds: p.costNanos[t]), accesses: accesses,
                outputBytes: p.outputBytes[t], policy: FailurePolicy(retries: retries, action: try action(p.action[t])),
                label: p.labels.isEmpty ? "" : p.labels[t], failingAttempts: failing)
            if !bodies.isEmpty {
                let k = Int(p.bodyOf[t])
                guard k < bodies.count else { throw .invalid("call \(t) runs body \(k) of \(bodies.count)") }
                spec.body = bodies[k]
            }
            out.append(spec)
        }
        return out
    }

    static func mark(_ m: WorkflowSpec.Mark) -> Shoal_Wire_V1_Mark {
        var p = Shoal_Wire_V1_Mark()
        p.beforeTask = m.beforeTask
        switch m.kind {
        case .newData(let count): p.newData = count
        case .wait(let datum): p.wait = datum
        }
        return p
    }
    static func mark(_ p: Shoal_Wire_V1_Mark) throws(E) -> WorkflowSpec.Mark {
        switch p.kind {
        case .newData(let count): return WorkflowSpec.Mark(beforeTask: Int(p.beforeTask), .newData(count: count))
        case .wait(let datum): return WorkflowSpec.Mark(beforeTask: Int(p.beforeTask), .wait(datum: datum))
        case nil: throw .invalid("a mark of no kind")
        }
    }
    static func marks(_ ps: [Shoal_Wire_V1_Mark]) throws(E) -> [WorkflowSpec.Mark] {
        var out: [WorkflowSpec.Mark] = []
        out.reserveCapacity(ps.count)
        for p in ps { out.append(try mark(p)) }
        return out
    }

    static func count(_ n: UInt64, _ what: String) throws(E) -> Int {
        guard let k = Int(exactly: n), k <= Int(Int32.max) else { throw .invalid("\(what) \(n)") }
        return k
    }

    static func peers(_ ps: [PeerID]) -> [UInt64] { ps.map(\.raw) }
    static func peers(_ ps: [UInt64]) -> [PeerID] { ps.map { PeerID(raw: $0) } }

    static func entry(_ e: RecordEntry) -> Shoal_Wire_V1_RecordEntry {
        var p = Shoal_Wire_V1_RecordEntry()
        p.kind = Shoal_Wire_V1_EntryKind(rawValue: Int(e.kind.rawValue)) ?? .made
        p.task = e.task
        p.version = e.version
        p.holder = e.holder.raw
        p.checksum = e.checksum
        p.bytes = e.bytes
        p.source = e.source
        if let f = e.failure { p.failure = failure(f) }
        return p
    }
    static func entry(_ p: Shoal_Wire_V1_RecordEntry) throws(E) -> RecordEntry {
        guard let raw = UInt8(exactly: p.kind.rawValue), let kind = RecordEntry.Kind(rawValue: raw) else {
            throw .invalid("record entry kind \(p.kind.rawValue)")
        }
        return RecordEntry(
            kind, task: p.task, version: p.version, holder: PeerID(raw: p.holder), checksum: p.checksum, bytes: p.bytes,
            source: p.source, failure: p.hasFailure ? failure(p.failure) : nil)
    }

    static func work(_ m: WorkMessage) -> Shoal_Wire_V1_Work {
        var p = Shoal_Wire_V1_Work()
        switch m {
        case .fetch(let v, let rid):
            var f = Shoal_Wire_V1_Fetch()
            f.version = version(v)
            f.requestID = rid
            p.fetch = f
        case .data(let v, let rid, let val):
            var d = Shoal_Wire_V1_DataMessage()
            d.version = version(v)
            d.requestID = rid
            d.value = value(val)
            p.data = d
        case .noData(let v, let rid):
            var f = Shoal_Wire_V1_Fetch()
            f.version = version(v)
            f.requestID = rid
            p.noData = f
        case .started(let ts): p.started = tasks(ts)
        case .result(let t, let outputs, let basis):
            var r = Shoal_Wire_V1_Result()
            r.task = task(t)
            r.outputs = outputs.map { o in
                var q = Shoal_Wire_V1_OutputRecord()
                q.version = version(o.version)
                q.bytes = o.bytes
                q.checksum = o.checksum
                return q
            }
            r.basis = basis
            p.result = r
        case .failure(let t, let attempt, let f):
            var r = Shoal_Wire_V1_TaskFailed()
            r.task = task(t)
            r.attempt = UInt32(attempt)
            r.failure = failure(f)
            p.failure = r
        case .resultAck(let ts): p.resultAck = tasks(ts)
        case .query(let ts): p.query = tasks(ts)
        case .unknown(let ts): p.unknown = tasks(ts)
        case .inputLost(let t, let v, let holder, let definite):
            var r = Shoal_Wire_V1_InputLost()
            r.task = task(t)
            r.version = version(v)
            r.holder = holder.raw
            r.definite = definite
            p.inputLost = r
        case .recordCreate(let wf, let owner, let backups, let plan, let initial):
            var r = Shoal_Wire_V1_RecordCreate()
            r.workflow = wf.raw
            r.owner = owner.raw
            r.backups = peers(backups)
            var spec = Shoal_Wire_V1_WorkflowSpec()
            spec.name = plan.name
            spec.dataCount = UInt64(plan.dataCount)
            spec.initialBytes = plan.initialBytes
            spec.calls = calls(plan.calls(0..<plan.taskCount))
            spec.marks = plan.marks.map(mark)
            r.spec = spec
            r.open = plan.isOpen
            r.initial = initial.map(value)
            p.recordCreate = r
        case .recordPart(let wf, let owner, let part):
            var r = Shoal_Wire_V1_RecordPart()
            r.workflow = wf.raw
            r.owner = owner.raw
            r.index = UInt32(clamping: part.index)
            r.parts = UInt32(clamping: part.parts)
            r.backups = peers(part.backups)
            r.name = part.name
            r.dataCount = UInt64(part.dataCount)
            r.initialBytes = part.initialBytes
            r.taskCount = UInt64(part.taskCount)
            r.firstTask = UInt64(part.firstTask)
            r.calls = calls(part.tasks)
            r.marks = part.marks.map(mark)
            r.firstDatum = UInt64(part.firstDatum)
            r.initial = part.initial.map(value)
            p.recordPart = r
        case .recordAppend(let wf, let owner, let first, let entries):
            var r = Shoal_Wire_V1_RecordAppend()
            r.workflow = wf.raw
            r.owner = owner.raw
            r.first = UInt64(clamping: first)
            r.entries = entries.map(entry)
            p.recordAppend = r
        case .recordAck(let wf, let count):
            var r = Shoal_Wire_V1_RecordAck()
            r.workflow = wf.raw
            r.count = Int64(count)
            p.recordAck = r
        case .release(let wf): p.release = workflow(wf)
        case .ownerCheck(let wf): p.ownerCheck = workflow(wf)
        case .notOwner(let wf): p.notOwner = workflow(wf)
        }
        return p
    }

    static func workflow(_ wf: WorkflowID) -> Shoal_Wire_V1_WorkflowRef {
        var p = Shoal_Wire_V1_WorkflowRef()
        p.workflow = wf.raw
        return p
    }

    static func work(_ p: Shoal_Wire_V1_Work) throws(E) -> WorkMessage {
        switch p.kind {
        case .fetch(let f): return .fetch(version: version(f.version), requestID: f.requestID)
        case .data(let d): return .data(version: version(d.version), requestID: d.requestID, value: value(d.value))
        case .noData(let f): return .noData(version: version(f.version), requestID: f.requestID)
        case .started(let t): return .started(tasks: t.tasks.map(task))
        case .result(let r):
            let outputs = r.outputs.map {
                OutputRecord(version: version($0.version), bytes: $0.bytes, checksum: $0.checksum)
            }
            return .result(task: task(r.task), outputs: outputs, basis: r.basis)
        case .failure(let r):
            guard let attempt = UInt16(exactly: r.attempt) else { throw .invalid("attempt \(r.attempt)") }
            return .failure(task: task(r.task), attempt: attempt, failure: failure(r.failure))
        case .resultAck(let t): return .resultAck(tasks: t.tasks.map(task))
        case .query(let t): return .query(tasks: t.tasks.map(task))
        case .unknown(let t): return .unknown(tasks: t.tasks.map(task))
        case .inputLost(let r):
            return .inputLost(task: task(r.task), version: version(r.version), holder: PeerID(raw: r.holder), definite: r.definite)
        case .recordCreate(let r):
            let spec = WorkflowSpec(
                name: r.spec.name, dataCount: try count(r.spec.dataCount, "data count"), initialBytes: r.spec.initialBytes,
                tasks: try calls(r.spec.calls), marks: try marks(r.spec.marks))
            let plan: WorkflowPlan
            do {
                plan = try WorkflowPlan(spec, open: r.open)
            } catch {
                throw .invalid("the plan of \(WorkflowID(raw: r.workflow)): \(error)")
            }
            return .recordCreate(
                workflow: WorkflowID(raw: r.workflow), owner: PeerID(raw: r.owner), backups: peers(r.backups), plan: plan,
                initial: r.initial.map(value))
        case .recordPart(let r):
            let part = RecordPart(
                index: Int(r.index), parts: Int(r.parts), backups: peers(r.backups), name: r.name,
                dataCount: try count(r.dataCount, "data count"), initialBytes: r.initialBytes,
                taskCount: try count(r.taskCount, "task count"), firstTask: try count(r.firstTask, "first task"),
                tasks: try calls(r.calls), marks: try marks(r.marks), firstDatum: try count(r.firstDatum, "first datum"),
                initial: r.initial.map(value))
            return .recordPart(workflow: WorkflowID(raw: r.workflow), owner: PeerID(raw: r.owner), part: part)
        case .recordAppend(let r):
            guard let first = Int(exactly: r.first) else { throw .invalid("first entry \(r.first)") }
            var entries: [RecordEntry] = []
            entries.reserveCapacity(r.entries.count)
            for e in r.entries { entries.append(try entry(e)) }
            return .recordAppend(workflow: WorkflowID(raw: r.workflow), owner: PeerID(raw: r.owner), first: first, entries: entries)
        case .recordAck(let r): return .recordAck(workflow: WorkflowID(raw: r.workflow), count: Int(r.count))
        case .release(let r): return .release(workflow: WorkflowID(raw: r.workflow))
        case .ownerCheck(let r): return .ownerCheck(workflow: WorkflowID(raw: r.workflow))
        case .notOwner(let r): return .notOwner(workflow: WorkflowID(raw: r.workflow))
        case nil: throw .invalid("a work message of no kind")
        }
    }

    // MARK: Placement

    public static func objectVersion(_ v: ObjectVersion) -> Shoal_Wire_V1_ObjectVersion {
        var p = Shoal_Wire_V1_ObjectVersion()
        p.stamp = v.stamp
        p.writer = v.writer.raw
        return p
    }
    static func objectVersion(_ p: Shoal_Wire_V1_ObjectVersion) -> ObjectVersion {
        ObjectVersion(stamp: p.stamp, writer: PeerID(raw: p.writer))
    }
    static func object(_ o: StoredObject) -> Shoal_Wire_V1_StoredObject {
        var p = Shoal_Wire_V1_StoredObject()
        p.key = o.key
        p.version = objectVersion(o.version)
        p.value = value(o.value)
        return p
    }
    static func object(_ p: Shoal_Wire_V1_StoredObject) -> StoredObject {
        StoredObject(key: p.key, version: objectVersion(p.version), value: value(p.value))
    }
    static func keyVersion(_ key: UInt64, _ v: ObjectVersion) -> Shoal_Wire_V1_KeyVersion {
        var p = Shoal_Wire_V1_KeyVersion()
        p.key = key
        p.version = objectVersion(v)
        return p
    }

    static func placement(_ m: PlacementMessage) -> Shoal_Wire_V1_Placement {
        var p = Shoal_Wire_V1_Placement()
        switch m {
        case .store(let o): p.store = object(o)
        case .stored(let k, let v): p.stored = keyVersion(k, v)
        case .offer(let k, let v): p.offer = keyVersion(k, v)
        case .want(let k, let v): p.want = keyVersion(k, v)
        case .have(let k, let v): p.have = keyVersion(k, v)
        case .fetch(let rid, let key):
            var f = Shoal_Wire_V1_ObjectFetch()
            f.requestID = rid
            f.key = key
            p.fetch = f
        case .fetched(let rid, let key, let o):
            var f = Shoal_Wire_V1_ObjectFetched()
            f.requestID = rid
            f.key = key
            if let o { f.object = object(o) }
            p.fetched = f
        }
        return p
    }
    static func placement(_ p: Shoal_Wire_V1_Placement) throws(E) -> PlacementMessage {
        switch p.kind {
        case .store(let o): return .store(object(o))
        case .stored(let r): return .stored(key: r.key, version: objectVersion(r.version))
        case .offer(let r): return .offer(key: r.key, version: objectVersion(r.version))
        case .want(let r): return .want(key: r.key, version: objectVersion(r.version))
        case .have(let r): return .have(key: r.key, version: objectVersion(r.version))
        case .fetch(let r): return .fetch(requestID: r.requestID, key: r.key)
        case .fetched(let r): return .fetched(requestID: r.requestID, key: r.key, object: r.hasObject ? object(r.object) : nil)
        case nil: throw .invalid("a placement message of no kind")
        }
    }
}
