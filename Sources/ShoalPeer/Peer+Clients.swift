import Foundation
import Shoal
import ShoalCore
import ShoalShell
import ShoalSimulation
import ShoalTransport
import ShoalWire

/// The workflows clients submitted here and what they were told: the followers of each, and the
/// outputs of the ones that ended (kept for `fetch_output`, the newest `maxEnded`).
struct ClientTable {
    struct Live {
        var name: String
        var outputs: [ProgramWorkflow.Output]
        var followers: [Follower] = []
        var lastProgress: WorkflowProgress?
    }
    struct Follower: Hashable {
        var routingID: Data
        var requestID: UInt64
    }
    struct Ended {
        var finished: Shoal_Wire_V1_Finished
        var outputs: [String: [UInt8]?] = [:]

        /// Names the workflow's outputs: each takes the bytes `bytes` gives for its datum, and is
        /// listed in the `Finished` reply.
        mutating func name(_ named: [ProgramWorkflow.Output], bytes: (Int) -> [UInt8]?) {
            outputs = [:]
            finished.outputs = []
            for o in named {
                let b = bytes(o.datum)
                outputs[o.name] = b
                var info = Shoal_Wire_V1_OutputInfo()
                info.name = o.name
                info.present = b != nil
                info.bytes = UInt64(b?.count ?? 0)
                finished.outputs.append(info)
            }
        }
    }
    var live: [WorkflowID: Live] = [:]
    var ended: [WorkflowID: Ended] = [:]
    var endedOrder: [WorkflowID] = []
    /// Object requests waiting on the placement machine: our request id -> the client's.
    var objectRequests: [UInt64: (follower: Follower, name: String)] = [:]
    var nextObjectRequest: UInt64 = 1
    var submissions = 0
    /// Workflows this peer took over from a dead owner: their results are kept when they end, by
    /// datum, until a client follows them here and names its outputs.
    var takenOver: Set<WorkflowID> = []
    static let maxEnded = 256
    static let maxLive = 1_024
    static let maxFollowers = 64

    func name(of wf: WorkflowID) -> String? { live[wf]?.name }

    mutating func end(_ wf: WorkflowID, _ e: Ended) {
        live[wf] = nil
        ended[wf] = e
        endedOrder.append(wf)
        if endedOrder.count > Self.maxEnded { ended[endedOrder.removeFirst()] = nil }
    }
}

extension Peer {
    /// A client's request (or a peer's acting as a client).
    func serve(_ request: ClientRequest, payloads: [WirePayload], from routingID: Data, role: SenderRole) {
        counters.clientRequests += 1
        let asker = ClientTable.Follower(routingID: routingID, requestID: request.requestID)
        switch request.kind {
        case .status?:
            var reply = ClientReply()
            reply.status = status()
            answer(asker, reply)
        case .submit(let s)?:
            submit(s, payloads: payloads, from: asker)
        case .follow(let f)?:
            follow(f, asker)
        case .fetchOutput(let f)?:
            fetchOutput(f, asker)
        case .put(let put)?:
            guard payloads.count == 1 else { return fail(asker, .badInput, "a put carries the object's bytes as its one payload") }
            let bytes = payloads[0].bytes
            let value = ObjectValue(bytes: UInt64(bytes.count), content: PayloadDigest.of(bytes))
            shell.payloads.keepObject(bytes, content: value.content)
            objectRequest(put.name, asker) { .put(requestID: $0, key: $1, value: value) }
        case .get(let get)?:
            objectRequest(get.name, asker) { .get(requestID: $0, key: $1) }
        case .list?, .delete?:
            fail(asker, .unavailable, "listing and deleting objects are not served by this peer yet")
        case nil:
            fail(asker, .badInput, "the request says nothing")
        }
    }

    private func objectRequest(_ name: String, _ asker: ClientTable.Follower, _ event: (UInt64, UInt64) -> PeerEvent) {
        guard !name.isEmpty, name.utf8.count <= 1_024 else { return fail(asker, .badInput, "an object's name is 1 to 1024 bytes") }
        let rid = clients.nextObjectRequest
        clients.nextObjectRequest += 1
        clients.objectRequests[rid] = (asker, name)
        shell.step(event(rid, ObjectKey.of(name: name)), now: now, host: &effects)
    }

    func answer(_ to: ClientTable.Follower, _ reply: ClientReply, payloads: [WirePayload] = []) {
        var reply = reply
        reply.requestID = to.requestID
        let frames = Wire.encode(WireMessage(body: .reply(reply), payloads: payloads, sender: id))
        if !transport.reply(frames, to: to.routingID) { counters.sendsRefused += 1 }
    }

    func fail(
        _ to: ClientTable.Follower, _ code: Shoal_Wire_V1_ErrorCode, _ message: String, file: String = "", line: Int = 0,
        column: Int = 0, field: String = ""
    ) {
        var e = Shoal_Wire_V1_Error()
        e.code = code
        e.message = message
        e.file = file
        e.line = UInt32(clamping: line)
        e.column = UInt32(clamping: column)
        e.field = field
        var reply = ClientReply()
        reply.error = e
        answer(to, reply)
    }

    // MARK: Submit

    /// A workflow file and its data files: parsed by the same parser as `shoal run`, in a folder of
    /// its own under the data directory (relative data paths resolve as they do beside the file;
    /// a data file outside the submitted ones is refused), then submitted here: this peer owns it.
    private func submit(_ s: Shoal_Wire_V1_SubmitFile, payloads: [WirePayload], from asker: ClientTable.Follower) {
        guard clients.live.count < ClientTable.maxLive else {
            return fail(asker, .unavailable, "this peer owns \(clients.live.count) workflows, its limit; submit to another peer")
        }
        guard s.files.count == payloads.count else {
            return fail(asker, .badInput, "\(s.files.count) files are named but \(payloads.count) payloads follow")
        }
        clients.submissions += 1
        let staging = config.dataDirectory + "/submissions/\(clients.submissions)"
        defer { try? FileManager.default.removeItem(atPath: staging) }
        let depth = s.files.map { $0.split(separator: "/").prefix { $0 == ".." }.count }.max() ?? 0
        let folder = staging + "/w" + String(repeating: "/d", count: depth)
        let fileName = s.path.split(separator: "/").last.map(String.init) ?? "workflow.yaml"
        let clientFolder = (s.path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for (path, payload) in zip(s.files, payloads) {
                guard !path.isEmpty, !path.hasPrefix("/") else {
                    return fail(asker, .badInput, "data file '\(path)': only paths relative to the workflow file can be submitted")
                }
                let target = URL(fileURLWithPath: folder + "/" + path).standardizedFileURL.path
                guard target.hasPrefix(staging + "/") else {
                    return fail(asker, .badInput, "data file '\(path)' is outside the submission")
                }
                try FileManager.default.createDirectory(
                    atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                guard FileManager.default.createFile(atPath: target, contents: payload.data) else {
                    return fail(asker, .internal, "cannot stage data file '\(path)'")
                }
            }
            try s.text.write(toFile: folder + "/" + fileName, atomically: false, encoding: .utf8)
        } catch {
            return fail(asker, .internal, "cannot stage the submission: \(error)")
        }
        // Errors name the client's file, not the staging folder.
        func shown(_ text: String) -> String {
            text.replacingOccurrences(of: folder + "/" + fileName, with: s.path)
                .replacingOccurrences(of: folder, with: clientFolder.isEmpty ? "." : clientFolder)
        }
        let file: WorkflowFile
        do {
            file = try WorkflowFile.load(path: folder + "/" + fileName)
            try file.validate(knownTasks: knownTasks)
        } catch {
            return fail(
                asker, .badInput, shown(error.message), file: s.path, line: error.location?.line ?? 0,
                column: error.location?.column ?? 0, field: error.field ?? "")
        }
        for d in file.data {
            if case .file(let path) = d.value, !path.hasPrefix(staging + "/") {
                return fail(asker, .badInput, "data '\(d.name)': its file \(shown(path)) was not submitted with the workflow")
            }
        }
        let program: ProgramWorkflow
        let plan: WorkflowPlan
        do {
            program = try ProgramWorkflow(file: file)
            plan = try WorkflowPlan(program.spec, open: false)
        } catch {
            return fail(asker, .badInput, shown("\(error)"), file: s.path)
        }
        let wf = shell.newWorkflowID()
        let initial = program.initial.map(PayloadDigest.value(of:))
        for (bytes, value) in zip(program.initial, initial) { shell.payloads.keep(bytes, as: value, for: wf) }
        var live = ClientTable.Live(name: program.spec.name, outputs: program.outputs)
        if s.follow { live.followers.append(asker) }
        clients.live[wf] = live
        logger.info("workflow \(program.spec.name) (\(wf.raw)) submitted: \(plan.taskCount) tasks")
        var submitted = Shoal_Wire_V1_Submitted()
        submitted.workflow = wf.raw
        submitted.owner = id.raw
        submitted.ownerAddress = address
        submitted.tasks = UInt64(plan.taskCount)
        submitted.outputs = program.outputs.map(\.name)
        submitted.outputData = program.outputs.map { UInt32($0.datum) }
        var reply = ClientReply()
        reply.submitted = submitted
        answer(asker, reply)
        shell.step(.submit(workflow: wf, plan: plan, initial: initial), now: now, host: &effects)
    }

    /// A client follows a workflow: answered at once with its end or its progress. At a peer that
    /// took it over, the client's outputs (names and data) become the workflow's.
    private func follow(_ f: Shoal_Wire_V1_Follow, _ asker: ClientTable.Follower) {
        let wf = WorkflowID(raw: f.workflow)
        let named = zip(f.outputs, f.outputData).map { ProgramWorkflow.Output(name: $0, datum: Int($1)) }
        if var ended = clients.ended[wf] {
            if ended.finished.outputs.isEmpty && !named.isEmpty {
                // Ended here after a takeover: its results were kept by datum.
                let byDatum = ended.outputs
                ended.name(named) { byDatum["#\($0)"] ?? nil }
                clients.ended[wf] = ended
            }
            var reply = ClientReply()
            reply.finished = ended.finished
            return answer(asker, reply)
        }
        if clients.live[wf] == nil, shell.machine.work.counts(of: wf) != nil {
            clients.live[wf] = ClientTable.Live(name: "workflow-\(wf.raw)", outputs: named)
        }
        guard clients.live[wf] != nil else { return fail(asker, .notFound, "workflow \(wf.raw) is not owned by this peer") }
        if clients.live[wf]!.outputs.isEmpty { clients.live[wf]!.outputs = named }
        if !clients.live[wf]!.followers.contains(asker) {
            guard clients.live[wf]!.followers.count < ClientTable.maxFollowers else {
                return fail(asker, .unavailable, "workflow \(wf.raw) has \(ClientTable.maxFollowers) followers, its limit")
            }
            clients.live[wf]!.followers.append(asker)
        }
        clients.live[wf]!.lastProgress = nil  // answered now, and again when it moves
        sendProgress(force: true)
    }

    private func fetchOutput(_ f: Shoal_Wire_V1_FetchOutput, _ asker: ClientTable.Follower) {
        let wf = WorkflowID(raw: f.workflow)
        guard let ended = clients.ended[wf] else {
            let why = clients.live[wf] != nil ? "has not ended yet" : "is not known at this peer (or ended long ago)"
            return fail(asker, .notFound, "workflow \(wf.raw) \(why)")
        }
        guard let bytes = ended.outputs[f.name] else { return fail(asker, .badInput, "the workflow has no output '\(f.name)'") }
        var output = Shoal_Wire_V1_Output()
        output.workflow = wf.raw
        output.name = f.name
        output.present = bytes != nil
        var reply = ClientReply()
        reply.output = output
        answer(asker, reply, payloads: bytes.map { [WirePayload($0)] } ?? [])
    }

    /// Progress to the followers of each workflow owned here, when it changed, at most every
    /// `progressInterval` (counting a workflow's tasks is a pass over them).
    func sendProgress(force: Bool = false) {
        let t = now
        guard force || t >= lastProgressAt + Self.progressInterval else { return }
        lastProgressAt = t
        for (wf, live) in clients.live where !live.followers.isEmpty {
            guard let counts = shell.machine.work.counts(of: wf), counts != live.lastProgress else { continue }
            clients.live[wf]!.lastProgress = counts
            var p = Shoal_Wire_V1_Progress()
            p.workflow = wf.raw
            p.total = UInt64(counts.total)
            p.done = UInt64(counts.done)
            p.running = UInt64(counts.running)
            p.failed = UInt64(counts.failed)
            p.peers = counts.runningAt.map {
                var t = Shoal_Wire_V1_PeerTasks()
                t.peer = $0.peer.raw
                t.tasks = UInt64($0.tasks)
                return t
            }
            var reply = ClientReply()
            reply.progress = p
            for f in live.followers { answer(f, reply) }
        }
    }

    // MARK: Reports

    func reported(_ report: ShellReport, bytes: [[UInt8]?]) {
        switch report {
        case .statusChanged(let peer, let status):
            logger.info("peer \(peer.hex) is \(status)")
            if status == .dead || status == .left, let c = book[peer] { transport.disconnect(remote(c)) }
        case .completed(let wf, _, let failures):
            ended(wf, outcome: .completed, reason: "", cause: nil, failures: failures, results: bytes)
        case .failed(let wf, let reason, let cause):
            ended(wf, outcome: .failed, reason: reason, cause: cause, failures: [], results: [])
        case .tookOver(let wf, let from):
            logger.warning("took over workflow \(wf.raw) from \(from.hex)")
            clients.takenOver.insert(wf)
        case .putAcknowledged(let rid, _, let version):
            guard let (asker, name) = clients.objectRequests.removeValue(forKey: rid) else { return }
            var stored = Shoal_Wire_V1_Stored()
            stored.name = name
            stored.version = WireMapping.objectVersion(version)
            var reply = ClientReply()
            reply.stored = stored
            answer(asker, reply)
        case .putFailed(let rid, _, let reason), .getFailed(let rid, _, let reason):
            guard let (asker, _) = clients.objectRequests.removeValue(forKey: rid) else { return }
            fail(asker, .unavailable, reason)
        case .getResult(let rid, let object):
            guard let (asker, name) = clients.objectRequests.removeValue(forKey: rid) else { return }
            var value = Shoal_Wire_V1_ObjectValue()
            value.name = name
            let found = bytes.first ?? nil
            value.found = object != nil && found != nil
            if let object { value.version = WireMapping.objectVersion(object.version) }
            var reply = ClientReply()
            reply.value = value
            answer(asker, reply, payloads: value.found ? [WirePayload(found!)] : [])
        case .heldBytesRefused(let task):
            logger.warning("task \(task.task) of workflow \(task.workflow.raw) failed: its outputs would pass the held-bytes limit")
        case .violation(let kind, let text):
            logger.error("\(kind): \(text)")
        case .storeFailed(let text):
            // What was acknowledged is on disk; what follows must not be acknowledged: stop.
            logger.critical("the shard failed: \(text); stopping")
            exit(70)
        case .waited, .barrierReached, .resultApplied, .taskReopened:
            break
        }
    }

    private func ended(
        _ wf: WorkflowID, outcome: Shoal_Wire_V1_Outcome, reason: String, cause: FailureReport?, failures: [FailureReport],
        results: [[UInt8]?]
    ) {
        let taken = clients.takenOver.remove(wf) != nil
        guard let live = clients.live[wf] ?? (taken ? ClientTable.Live(name: "workflow-\(wf.raw)", outputs: []) : nil) else {
            return
        }
        var finished = Shoal_Wire_V1_Finished()
        finished.workflow = wf.raw
        finished.outcome = outcome
        finished.reason = reason
        if let cause { finished.cause = WireMapping.report(cause) }
        finished.failures = failures.map(WireMapping.report)
        var e = ClientTable.Ended(finished: finished)
        e.name(live.outputs) { $0 < results.count ? results[$0] : nil }
        if live.outputs.isEmpty && taken {
            // Taken over and not followed yet: every result is kept, by datum, for a client to name.
            for (d, b) in results.enumerated() { e.outputs["#\(d)"] = b }
        }
        logger.info("workflow \(live.name) (\(wf.raw)) \(outcome == .completed ? "completed" : "failed: \(reason)")")
        clients.end(wf, e)
        var reply = ClientReply()
        reply.finished = e.finished
        for f in live.followers { answer(f, reply) }
    }

    // MARK: Status

    func status() -> Shoal_Wire_V1_PeerStatus {
        let m = shell.machine
        var s = Shoal_Wire_V1_PeerStatus()
        s.peer = id.raw
        s.address = address
        s.slots = UInt32(clamping: config.slots)
        s.running = UInt32(clamping: m.work.settings.slots - m.work.freeSlots)
        s.ready = UInt32(clamping: m.work.readyTasks)
        s.storedBytes = UInt64((try? shard.storedBytes()) ?? 0) + UInt64(shell.payloads.heldBytes)
        s.stealsMade = UInt64(m.steal.counters.stealsGranted)
        s.tasksGiven = UInt64(m.steal.counters.tasksGiven)
        s.workflowsOwned = UInt64(m.work.ownedWorkflows.count)
        s.workflowsBackedUp = UInt64(m.work.backedUpWorkflows.count)
        s.tasksRun = UInt64(m.work.counters.tasksRun)
        let t = transport.stats
        s.messagesDropped = counters.droppedTotal + t.tooManyFrames + t.refusedIdentity
        s.keysRejected = t.rejectedKeys
        m.membership.forEachMember { info in
            var mi = Shoal_Wire_V1_MemberStatusInfo()
            mi.peer = info.peer.raw
            mi.address = book[info.peer]?.address ?? ""
            mi.status = WireMapping.status(info.status)
            mi.incarnation = UInt64(info.incarnation)
            mi.load = WireMapping.load(info.load)
            s.members.append(mi)
        }
        s.stealRoundTrips = steals.count
        s.stealRoundTripP50Us = steals.percentile(50)
        s.stealRoundTripP99Us = steals.percentile(99)
        s.fetches = fetches.count
        s.fetchedBytes = fetches.bytes
        s.fetchMicros = fetches.totalMicros
        s.fetchP50Us = fetches.percentile(50)
        s.fetchP99Us = fetches.percentile(99)
        s.metrics = metricsText(transport: t)
        return s
    }

    /// Every counter in Prometheus's text exposition format (`PeerMetrics`).
    func metricsText(transport t: TransportStats) -> String {
        let m = shell.machine
        let figures: [(String, String, UInt64)] = [
            ("shoal_messages_received_total", "messages received on the port", t.messagesReceived),
            ("shoal_bytes_received_total", "bytes received on the port", t.bytesReceived),
            ("shoal_messages_sent_total", "messages sent", t.messagesSent),
            ("shoal_bytes_sent_total", "bytes sent", t.bytesSent),
            ("shoal_frames_dropped_malformed_total", "messages that did not decode", counters.malformed),
            ("shoal_frames_dropped_version_total", "messages of another wire version", counters.wrongVersion),
            ("shoal_frames_dropped_invalid_total", "messages with a field out of range", counters.invalid),
            ("shoal_frames_dropped_too_many_total", "messages over the frame limit", t.tooManyFrames),
            ("shoal_messages_refused_role_total", "peer messages from a client key", counters.refusedRole),
            ("shoal_messages_refused_sender_total", "messages whose sender is not their key", counters.spoofedSender),
            ("shoal_keys_rejected_total", "handshakes with a key on no allow-list", t.rejectedKeys),
            ("shoal_handshakes_failed_total", "handshakes that failed", t.failedHandshakes),
            ("shoal_unauthenticated_connections_total", "connections that never authenticated", t.unauthenticatedConnections),
            ("shoal_disconnects_total", "connections to the port that ended (an oversized frame ends one)", t.disconnects),
            ("shoal_steals_total", "steals granted to this peer", UInt64(m.steal.counters.stealsGranted)),
            ("shoal_tasks_stolen_total", "tasks this peer stole", UInt64(m.steal.counters.tasksStolen)),
            ("shoal_tasks_given_total", "tasks this peer gave to thieves", UInt64(m.steal.counters.tasksGiven)),
            ("shoal_tasks_run_total", "task bodies run here", UInt64(m.work.counters.tasksRun)),
            ("shoal_tasks_failed_total", "task attempts that failed here", UInt64(m.work.counters.tasksFailed)),
            ("shoal_client_requests_total", "client requests served", counters.clientRequests),
            ("shoal_payloads_corrupt_total", "received bytes that did not match their digest", UInt64(shell.counters.corruptPayloads)),
            ("shoal_fetches_total", "values fetched from other peers", fetches.count),
            ("shoal_fetched_bytes_total", "bytes of the values fetched from other peers", fetches.bytes),
        ]
        for (name, help, value) in figures { metrics.update(name, help: help, to: value) }
        return metrics.text()
    }
}
