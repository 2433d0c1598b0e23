/// A change of a workflow record on this peer's disk (`WorkDirective.persistRecord`): the owner
/// writes its own record, and each backup the copy it keeps.
public enum RecordWrite: Sendable {
    indirect case create(workflow: WorkflowID, owner: PeerID, backups: [PeerID], plan: WorkflowPlan, initial: [DataValue])
    /// Log entries `first..<first + entries.count`.
    case append(workflow: WorkflowID, first: Int, entries: [RecordEntry])
    /// The workflow ended (or its record moved): forget it.
    case drop(workflow: WorkflowID)
}

/// A workflow record as a restarted peer's shard held it.
public struct RecoveredRecord: Sendable {
    public var workflow: WorkflowID
    public var owner: PeerID
    public var backups: [PeerID]
    public var plan: WorkflowPlan
    public var initial: [DataValue]
    public var log: [RecordEntry]
}

/// How workflow records are laid out in the shard's `workflows` table: one entry per record
/// (`R` + workflow (8 bytes, big-endian) + `C`: owner, backups, the plan's calls, initial values)
/// and one per appended batch of log entries (`R` + workflow + `L` + first index). Fixed-width little-endian fields; the shard adds
/// and checks its BLAKE2b per entry.
public enum RecordCodec {
    /// The key prefix of one workflow's entries (a `drop` deletes them all).
    public static func prefix(_ workflow: WorkflowID) -> [UInt8] {
        [0x52] + bigEndian(workflow.raw)
    }

    static func bigEndian(_ x: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: x >> (8 * (7 - UInt64($0)))) }
    }

    /// The (key, value) a create or append writes; nil for a drop.
    public static func entry(_ write: RecordWrite) -> (key: [UInt8], value: [UInt8])? {
        switch write {
        case .create(let wf, let owner, let backups, let plan, let initial):
            var w = Writer()
            w.u64(owner.raw)
            w.u64s(backups.map(\.raw))
            w.bytes(Array(plan.name.utf8))
            w.u64(UInt64(plan.dataCount))
            w.u64(plan.initialBytes)
            // The calls: the renaming rebuilds the rest (`WorkflowPlan.init`).
            w.u64s(plan.catalogueKey)
            w.u64s(plan.cost.map { UInt64(bitPattern: $0) })
            w.u64s(plan.outputBytes)
            w.u32s(plan.accessStart)
            w.u32s(plan.accessDatum)
            w.bytes(plan.accessDirection.map(\.rawValue))
            // Per task: retries, action, failing attempts (modelled), and its label.
            w.u64(UInt64(plan.taskCount))
            for t in 0..<plan.taskCount {
                w.u32(UInt32(plan.policy[t].retries))
                w.u32(UInt32(plan.policy[t].action.rawValue))
                w.u32(UInt32(plan.failingAttempts[t]))
                w.bytes(Array(plan.label[t].utf8))
            }
            // The bodies (none when every body is modelled): kind, then two byte strings.
            w.u64(UInt64(plan.bodies.count))
            for body in plan.bodies {
                switch body {
                case .modelled: w.u32(0); w.bytes([]); w.bytes([])
                case .registered(let name, let arguments): w.u32(1); w.bytes(Array(name.utf8)); w.bytes(arguments)
                case .exec(let command): w.u32(2); w.bytes(Array(command.utf8)); w.bytes([])
                }
            }
            // Data defined and waits between calls (a program that grew its workflow).
            w.u64(UInt64(plan.marks.count))
            for m in plan.marks {
                w.u32(UInt32(bitPattern: m.beforeTask))
                switch m.kind {
                case .newData(let count): w.u32(0); w.u32(UInt32(bitPattern: count))
                case .wait(let datum): w.u32(1); w.u32(UInt32(bitPattern: datum))
                }
            }
            w.u64(UInt64(initial.count))
            for v in initial {
                w.u64(v.bytes)
                w.u64(v.content)
                w.u64(v.checksum)
            }
            return (prefix(wf) + [0x43], w.out)
        case .append(let wf, let first, let entries):
            var w = Writer()
            w.u64(UInt64(entries.count))
            for e in entries {
                w.u32(UInt32(e.kind.rawValue))
                w.u32(e.source)
                w.u64(UInt64(e.task))
                w.u64(UInt64(e.version))
                w.u64(e.holder.raw)
                w.u64(e.checksum)
                w.u64(e.bytes)
                if e.kind == .attemptFailed {
                    // Its cause: present?, exit status present? and value, the message, the stderr tail.
                    let f = e.failure
                    w.u32(f == nil ? 0 : 1)
                    w.u32(f?.exitStatus == nil ? 0 : 1)
                    w.u32(UInt32(bitPattern: f?.exitStatus ?? 0))
                    w.bytes(Array((f?.message ?? "").utf8))
                    w.bytes(Array((f?.stderrTail ?? "").utf8))
                }
            }
            return (prefix(wf) + [0x4C] + bigEndian(UInt64(first)), w.out)
        case .drop:
            return nil
        }
    }

    /// The records in a scan of the `workflows` table (keys in order). Entries that do not decode
    /// are skipped, and a log is kept only up to its first gap.
    public static func records(_ entries: [ShardEntry]) -> [RecoveredRecord] {
        var found: [RecoveredRecord] = []
        for e in entries where e.key.count >= 10 && e.key[0] == 0x52 {
            let wf = WorkflowID(raw: e.key[1..<9].reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
            var r = Reader(e.value)
            if e.key[9] == 0x43 {
                guard let owner = r.u64(), let backups = r.u64s(), let name = r.bytes(), let dataCount = r.u64(),
                    let initialBytes = r.u64(), let keys = r.u64s(), let cost = r.u64s(), let outBytes = r.u64s(),
                    let accessStart = r.u32s(), let accessDatum = r.u32s(), let directions = r.bytes(),
                    let policies = r.taskPolicies(), let bodies = r.bodies(), bodies.isEmpty || bodies.count == keys.count,
                    let marks = r.marks(),
                    let n = r.u64(), n < 1 << 32, dataCount < 1 << 31, policies.count == keys.count,
                    keys.count == cost.count, keys.count == outBytes.count, accessStart.count == keys.count + 1,
                    accessDatum.count == directions.count
                else { continue }
                var initial: [DataValue] = []
                for _ in 0..<n {
                    guard let b = r.u64(), let c = r.u64(), let s = r.u64() else { break }
                    initial.append(DataValue(bytes: b, content: c, checksum: s))
                }
                // The shard checked the bytes; these check the shape, and the plan its indices.
                guard initial.count == Int(n), initial.count == Int(dataCount), accessStart.first == 0,
                    accessStart.last.map(Int.init) == accessDatum.count,
                    zip(accessStart, accessStart.dropFirst()).allSatisfy({ $0 <= $1 })
                else { continue }
                var accesses: [WorkflowTaskSpec.Access] = []
                for (datum, raw) in zip(accessDatum, directions) {
                    guard let direction = Direction(rawValue: raw) else { break }
                    accesses.append(WorkflowTaskSpec.Access(Int(datum), direction))
                }
                guard accesses.count == accessDatum.count else { continue }
                let tasks = keys.indices.map { t in
                    var call = WorkflowTaskSpec(
                        catalogueKey: keys[t], cost: Interval(nanoseconds: Int64(bitPattern: cost[t])),
                        accesses: Array(accesses[Int(accessStart[t])..<Int(accessStart[t + 1])]), outputBytes: outBytes[t],
                        policy: policies[t].policy, label: policies[t].label, failingAttempts: policies[t].failing)
                    if !bodies.isEmpty { call.body = bodies[t] }
                    return call
                }
                let spec = WorkflowSpec(
                    name: String(decoding: name, as: UTF8.self), dataCount: Int(dataCount), initialBytes: initialBytes,
                    tasks: tasks, marks: marks)
                guard let plan = try? WorkflowPlan(spec) else { continue }
                found.append(
                    RecoveredRecord(
                        workflow: wf, owner: PeerID(raw: owner), backups: backups.map { PeerID(raw: $0) }, plan: plan,
                        initial: initial, log: []))
            } else if e.key[9] == 0x4C, e.key.count == 18, let i = found.indices.last, found[i].workflow == wf {
                let first = e.key[10..<18].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                guard first == UInt64(found[i].log.count), let n = r.u64(), n < 1 << 32 else { continue }
                for _ in 0..<n {
                    guard let k = r.unsigned32(), k <= UInt8.max, let kind = RecordEntry.Kind(rawValue: UInt8(k)),
                        let source = r.unsigned32(), let t = r.u64(), let v = r.u64(), let h = r.u64(), let c = r.u64(),
                        let b = r.u64()
                    else { break }
                    var failure: TaskFailure?
                    if kind == .attemptFailed {
                        guard let present = r.unsigned32(), let hasExit = r.unsigned32(), let exit = r.u32(),
                            let message = r.bytes(), let stderr = r.bytes()
                        else { break }
                        if present == 1 {
                            failure = TaskFailure(
                                message: String(decoding: message, as: UTF8.self), exitStatus: hasExit == 1 ? exit : nil,
                                stderrTail: String(decoding: stderr, as: UTF8.self))
                        }
                    }
                    found[i].log.append(
                        RecordEntry(
                            kind, task: UInt32(truncatingIfNeeded: t), version: UInt32(truncatingIfNeeded: v),
                            holder: PeerID(raw: h), checksum: c, bytes: b, source: source, failure: failure))
                }
            }
        }
        return found
    }

    struct Writer {
        var out: [UInt8] = []
        mutating func u64(_ x: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: x >> (8 * UInt64(i)))) } }
        mutating func u32(_ x: UInt32) { for i in 0..<4 { out.append(UInt8(truncatingIfNeeded: x >> (8 * UInt32(i)))) } }
        mutating func u64s(_ xs: [UInt64]) {
            u64(UInt64(xs.count))
            out.reserveCapacity(out.count + 8 * xs.count)
            for x in xs { u64(x) }
        }
        mutating func u32s(_ xs: [Int32]) {
            u64(UInt64(xs.count))
            out.reserveCapacity(out.count + 4 * xs.count)
            for x in xs { u32(UInt32(bitPattern: x)) }
        }
        mutating func bytes(_ b: [UInt8]) {
            u64(UInt64(b.count))
            out += b
        }
    }

    struct Reader {
        let data: [UInt8]
        var at = 0
        init(_ data: [UInt8]) { self.data = data }
        mutating func u64() -> UInt64? {
            guard at + 8 <= data.count else { return nil }
            var x: UInt64 = 0
            for i in 0..<8 { x |= UInt64(data[at + i]) << (8 * UInt64(i)) }
            at += 8
            return x
        }
        mutating func u32() -> Int32? {
            guard at + 4 <= data.count else { return nil }
            var x: UInt32 = 0
            for i in 0..<4 { x |= UInt32(data[at + i]) << (8 * UInt32(i)) }
            at += 4
            return Int32(bitPattern: x)
        }
        mutating func count(_ width: Int) -> Int? {
            guard let n = u64(), n <= UInt64((data.count - at) / width) else { return nil }
            return Int(n)
        }
        mutating func u64s() -> [UInt64]? {
            guard let n = count(8) else { return nil }
            return (0..<n).map { _ in u64()! }
        }
        mutating func u32s() -> [Int32]? {
            guard let n = count(4) else { return nil }
            return (0..<n).map { _ in u32()! }
        }
        mutating func unsigned32() -> UInt32? { u32().map { UInt32(bitPattern: $0) } }

        /// Per task: retries, action, failing attempts and label (`entry(.create)`).
        mutating func taskPolicies() -> [(policy: FailurePolicy, label: String, failing: UInt16)]? {
            guard let n = count(16) else { return nil }
            var out: [(policy: FailurePolicy, label: String, failing: UInt16)] = []
            for _ in 0..<n {
                guard let retries = unsigned32(), retries <= UInt16.max, let a = unsigned32(), a <= UInt8.max,
                    let action = FailureAction(rawValue: UInt8(a)), let failing = unsigned32(), failing <= UInt16.max,
                    let label = bytes()
                else { return nil }
                out.append(
                    (FailurePolicy(retries: UInt16(retries), action: action), String(decoding: label, as: UTF8.self),
                        UInt16(failing)))
            }
            return out
        }
        /// The marks between calls (`entry(.create)`); the plan checks their order and range.
        mutating func marks() -> [WorkflowSpec.Mark]? {
            guard let n = count(12) else { return nil }
            var out: [WorkflowSpec.Mark] = []
            for _ in 0..<n {
                guard let at = u32(), let kind = unsigned32(), let x = u32() else { return nil }
                switch kind {
                case 0: out.append(.init(beforeTask: Int(at), .newData(count: x)))
                case 1: out.append(.init(beforeTask: Int(at), .wait(datum: x)))
                default: return nil
                }
            }
            return out
        }

        /// The calls' bodies (`entry(.create)`): none, or one per task.
        mutating func bodies() -> [TaskBody]? {
            guard let n = count(20) else { return nil }
            var out: [TaskBody] = []
            out.reserveCapacity(n)
            for _ in 0..<n {
                guard let kind = unsigned32(), let a = bytes(), let b = bytes() else { return nil }
                switch kind {
                case 0: out.append(.modelled)
                case 1: out.append(.registered(name: String(decoding: a, as: UTF8.self), arguments: b))
                case 2: out.append(.exec(command: String(decoding: a, as: UTF8.self)))
                default: return nil
                }
            }
            return out
        }
        mutating func bytes() -> [UInt8]? {
            guard let n = count(1) else { return nil }
            defer { at += n }
            return Array(data[at..<at + n])
        }
    }
}
