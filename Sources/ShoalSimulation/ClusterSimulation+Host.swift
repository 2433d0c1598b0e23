import ShoalCore
import ShoalShell

/// The simulation as the host of its peers' shells: messages travel on the simulated network,
/// timers and task results are events in virtual time, and what a shell reports is checked.
extension ClusterSimulation: PeerShellHost {
    public mutating func send(_ message: PeerMessage, payloads: [[UInt8]], to: PeerID, from shell: PeerShell) {
        let p = shell.id
        guard to.raw < UInt64(peers.count) else {
            violation("message to no peer", "\(p) sent \(message) to \(to)")
            return
        }
        var payloads = payloads
        if !payloads.isEmpty {
            payloadsSent += 1
            if corruptEveryNthPayload > 0, payloadsSent % corruptEveryNthPayload == 0, !payloads[0].isEmpty {
                payloads[0][0] ^= 0xFF
            }
        }
        for at in network.send(from: p, to: to, bytes: message.byteSize, now: now) {
            queue.schedule(
                .deliver(to: to, generation: peers[Int(to.raw)].generation, from: p, message: message, payloads: payloads),
                at: at)
        }
    }

    public mutating func schedule(_ timer: PeerTimer, after: Interval, at shell: PeerShell) {
        let p = shell.id
        queue.schedule(.timer(p, generation: peers[Int(p.raw)].generation, timer), at: now + after)
    }

    public mutating func execute(_ job: TaskJob, at shell: PeerShell) {
        execute(job, on: shell)
    }

    public mutating func report(_ report: ShellReport, at shell: PeerShell) {
        let p = shell.id
        let i = Int(p.raw)
        switch report {
        case .statusChanged(let peer, let status):
            self.report.statusChanges += 1
            trace?.instant("\(p) sees \(peer) \(status)", peer: p, at: now)
        case .barrierReached(let wf, let rid):
            let w = workflowIndex[wf]!
            if workflows[w].client != nil {
                clientAnswered(w, rid, .barrier)
                return
            }
            queue.schedule(.programBarrier(w, requestID: rid, at: p), at: now)
        case .waited(let wf, let rid, var value):
            if let w = workflowIndex[wf], workflows[w].client != nil {
                guard let value else {
                    clientAnswered(w, rid, .noValue)
                    return
                }
                guard let bytes = shell.payloads.bytes(of: value) else {
                    violation("payload missing", "\(p) answered a wait of \(workflows[w].plan.name) without the value's bytes")
                    return
                }
                clientAnswered(w, rid, .value(bytes))
                return
            }
            if tamperWaitedValues { value?.content &+= 1 }
            answered(workflowIndex[wf]!, requestID: rid, value: value, at: p)
        case .completed(let wf, let results, _):
            completed(workflowIndex[wf]!, results: results, at: shell)
        case .failed(let wf, let reason, let cause):
            let w = workflowIndex[wf]!
            // Failing is allowed when the cluster cannot recover an input; a task failure
            // that fails the workflow must be one the program has.
            if let program = workflows[w].program {
                // (A task failed by the held-bytes limit is the scenario's doing, not the program's.)
                if let expected = program.expected, !expected.fails, cause != nil, !workflows[w].hitHeldBytesLimit {
                    violation(
                        "failed by a task the program does not fail",
                        "\(workflows[w].plan.name) failed at \(p): \(reason), but its local run completed")
                }
            } else if let cause, !expectedOutcome(w).failingTasks.contains(cause.task) {
                violation("failed by a task the program does not fail", "\(workflows[w].plan.name) failed at \(p): \(reason)")
            }
            guard workflows[w].outcome.status == .unfinished else { return }
            workflows[w].outcome.status = .failed
            workflows[w].outcome.reason = reason
        case .resultApplied(let task):
            let w = workflowIndex[task.workflow]!
            let t = task.task
            Tracked.count(&workflows[w].applied, owner: i, task: t, of: workflows[w].spec.tasks.count)
            let applied = workflows[w].applied[i]![t]
            let reopened = workflows[w].reopened[i].map { t < $0.count ? $0[t] : 0 } ?? 0
            if Int(applied) > 1 + Int(reopened) {
                violation(
                    "result applied twice",
                    "task \(t) of \(workflows[w].plan.name): result applied \(applied) times by owner \(p) with \(reopened) re-openings")
            }
        case .taskReopened(let task):
            let w = workflowIndex[task.workflow]!
            Tracked.count(&workflows[w].reopened, owner: i, task: task.task, of: workflows[w].spec.tasks.count)
        case .tookOver(let wf, let from):
            let w = workflowIndex[wf]!
            workflows[w].outcome.owners.append(i)
            // The checker counts per owner: the new owner starts from its record.
            workflows[w].applied[i] = nil
            workflows[w].reopened[i] = nil
            trace?.instant("\(p) takes over workflow \(wf) from \(from)", peer: p, at: now)
        case .putAcknowledged(let rid, _, let version) where rid >= Self.clientRequests:
            if objectAnswers[rid] == nil { objectAnswers[rid] = .stored(version) }
        case .putFailed(let rid, _, let reason) where rid >= Self.clientRequests:
            if objectAnswers[rid] == nil { objectAnswers[rid] = .failed(reason) }
        case .getFailed(let rid, _, let reason) where rid >= Self.clientRequests:
            if objectAnswers[rid] == nil { objectAnswers[rid] = .failed(reason) }
        case .getResult(let rid, let object) where rid >= Self.clientRequests:
            guard objectAnswers[rid] == nil else { return }
            guard let object else {
                objectAnswers[rid] = .notFound
                return
            }
            guard let bytes = shell.payloads.objects[object.value.content] else {
                violation("payload missing", "\(p) read object \(object.key) without its bytes")
                objectAnswers[rid] = .failed("the object's bytes are missing on \(p)")
                return
            }
            objectAnswers[rid] = .found(bytes, object.version)
        case .putAcknowledged(let rid, let key, let version):
            guard let put = pendingPuts.removeValue(forKey: rid), put.key == key else { return }
            self.report.objects?.putsAcknowledged += 1
            if let known = acknowledged[key], known.version >= version { return }
            acknowledged[key] = (version, put.content)
        case .putFailed(let rid, _, _):
            if pendingPuts.removeValue(forKey: rid) != nil { self.report.objects?.putsFailed += 1 }
        case .getResult, .getFailed:
            break
        case .heldBytesRefused(let task):
            if let w = workflowIndex[task.workflow] { workflows[w].hitHeldBytesLimit = true }
        case .violation(let kind, let text):
            violation(kind, text)
        case .storeFailed(let text):
            violation("store failed", "\(p): \(text)")
        }
    }
}
