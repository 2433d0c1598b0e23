import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import Shoal
import ShoalCore
import ShoalExamples
import ShoalPeer
import ShoalShell
import ShoalTransport
import ShoalWire

#if canImport(Glibc)
    import Glibc
#endif

extension PeerCommand {
    /// `shoal peer start --config FILE [flags]`: a peer of a cluster, until SIGTERM or SIGINT.
    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "start",
            abstract: "Start a peer: print 'ready <peer id> <address>' once it accepts work, then log to stderr.",
            discussion: """
                The config file's fields (see config/peer-a.yaml) are overridden by these flags, and \
                both by SHOAL_* environment variables (SHOAL_LISTEN, SHOAL_SEEDS, SHOAL_DATA_DIR, \
                SHOAL_SLOTS, ...). A bad config names the file, line and field, and exits 2.
                """)

        @Option(help: "The peer's config file (YAML).") var config: String?
        @Option(help: "The one port: tcp://HOST:PORT (port 0: any free port).") var listen: String?
        @Option(help: "The address other peers reach this one at (default: --listen).") var advertise: String?
        @Option(help: "Peers to join through, comma-separated tcp://HOST:PORT.") var seeds: String?
        @Option(help: "A file of 'tcp://HOST:PORT PUBLIC-KEY' lines: the keys of the seeds.") var knownPeers: String?
        @Option(help: "The peer's data folder (its LMDB shard).") var dataDir: String?
        @Option(help: "Task bodies that run at once.") var slots: Int?
        @Option(help: "The peer's secret key file (NAME.key; NAME.pub beside it).") var key: String?
        @Option(help: "Allow-list of peer keys: a file of keys or a folder of .pub files.") var peersAllow: String?
        @Option(help: "Allow-list of client keys.") var clientsAllow: String?
        @Option(help: "curve (default) or none (a trusted network: no encryption, no authentication).") var security: String?
        @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel: String?
        @Option(help: "Copies of each persistent object.") var replicas: Int?
        @Option(help: "Membership's protocol period in milliseconds (how often peers probe each other).") var protocolPeriodMs: Int?
        @Option(help: "Jobs handed to the worker threads per slot (past 1: prefetched, neither free slots nor offered to thieves).") var queueDepth: Int?

        func run() async throws {
            var cfg: PeerConfig
            do {
                cfg = try config.map { path throws(YAMLFileError) in try PeerConfig.load(path: path) } ?? PeerConfig()
                let flags: [(String, String?)] = [
                    ("listen", listen), ("advertise", advertise), ("seeds", seeds), ("known-peers", knownPeers),
                    ("data-dir", dataDir), ("slots", slots.map(String.init)), ("key", key), ("peers-allow", peersAllow),
                    ("clients-allow", clientsAllow), ("security", security), ("log-level", logLevel),
                    ("replicas", replicas.map(String.init)), ("queue-depth", queueDepth.map(String.init)),
                    ("protocol-period-ms", protocolPeriodMs.map(String.init)),
                ]
                for case (let field, let value?) in flags { try cfg.set(field, value, source: "--\(field)") }
                try cfg.apply(environment: ProcessInfo.processInfo.environment)
            } catch {
                printError("error: \(error)")
                throw ExitCode(2)
            }
            let level = Logger.Level(rawValue: cfg.logLevel) ?? .info
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            let logger = Logger(label: "shoal.peer")
            let registry = ExampleTasks.registry
            let peer: ShoalPeer.Peer
            do {
                let work = URL(fileURLWithPath: cfg.dataDirectory + "/work")
                try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
                let runners: [any TaskBodyRunner & Sendable] = try (0..<cfg.slots).map { _ in
                    OneThreadRunner(try CallRunner(registry: registry, workDirectory: work))
                }
                peer = try ShoalPeer.Peer(config: cfg, runners: runners, knownTasks: Set(registry.names), logger: logger)
            } catch {
                printError("error: \(error)")
                throw ExitCode(shoal.exitCode(for: error) ?? 1)
            }
            // swift-service-lifecycle: SIGTERM and SIGINT are a graceful shutdown: the peer leaves
            // (membership tells the others it left; its backups take its workflows over), then
            // the command exits 0.
            let group = ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: PeerService(peer: peer), successTerminationBehavior: .gracefullyShutdownGroup)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
        }
    }
}

/// A peer as a service of a `ServiceGroup`: it runs until the group shuts down gracefully, then
/// leaves the cluster.
struct PeerService: Service {
    let peer: ShoalPeer.Peer

    func run() async throws {
        let peer = self.peer
        await withGracefulShutdownHandler {
            await peer.run { id, address in
                FileHandle.standardOutput.write(Data("ready \(id.hex) \(address)\n".utf8))
            }
        } onGracefulShutdown: {
            Task { await peer.leave() }
        }
    }
}

/// A body runner used by one worker thread only (`CallRunner` keeps a counter and a folder).
final class OneThreadRunner: TaskBodyRunner, @unchecked Sendable {
    let inner: CallRunner
    init(_ inner: CallRunner) { self.inner = inner }
    var catalogue: [UInt64] { inner.catalogue }
    func run(
        _ body: TaskBody, workflow: String, label: String, accesses: [WorkflowTaskSpec.Access], inputs: [[UInt8]?],
        attempt: Int
    ) -> Result<[[UInt8]], TaskFailure> {
        inner.run(body, workflow: workflow, label: label, accesses: accesses, inputs: inputs, attempt: attempt)
    }
}

/// How a client reaches a peer: its address, the peer's public key and the client's own key.
struct PeerOptions: ParsableArguments {
    @Option(help: "The peer to talk to: tcp://HOST:PORT.") var peer: String?
    @Option(name: .customLong("key"), help: "This client's secret key file (default: $SHOAL_CLIENT_KEY, else config/keys/client.key).")
    var clientKey: String?
    @Option(help: "The peer's public key file (default: its line in known-peers).") var peerKey: String?
    @Option(help: "'tcp://HOST:PORT KEY' lines (default: $SHOAL_KNOWN_PEERS, else config/known-peers).")
    var knownPeers: String?
    @Option(help: "curve (default) or none, as the cluster runs.") var security = "curve"

    func validate() throws {
        guard security == "curve" || security == "none" else { throw ValidationError("--security must be curve or none") }
    }

    func connect() throws -> ClientConnection {
        guard let peer else { throw ValidationError("--peer tcp://HOST:PORT is required") }
        return try connect(to: peer)
    }

    /// The peer's address (`--peer`, required by the commands that use these options).
    var address: String { peer ?? "" }

    /// A connection to `address` (the peer key of `--peer-key` belongs to `--peer` only).
    func connect(to address: String) throws -> ClientConnection {
        guard security == "curve" else { return try ClientConnection(peer: address, peerKey: nil, key: nil) }
        let env = ProcessInfo.processInfo.environment
        let keyPath = clientKey ?? env["SHOAL_CLIENT_KEY"] ?? "config/keys/client.key"
        let pair = try CurveKeyPair.read(secretKeyFile: keyPath)
        var peerPublic: CurveKey?
        if let peerKey, address == peer {
            peerPublic = try CurveKey.read(file: peerKey)
        } else {
            peerPublic = try known().keys[address]
        }
        return try ClientConnection(peer: address, peerKey: peerPublic, key: pair)
    }

    /// The known-peers file: the peers a client may fail over to.
    func known() throws -> KnownPeers {
        let env = ProcessInfo.processInfo.environment
        let path = knownPeers ?? env["SHOAL_KNOWN_PEERS"] ?? "config/known-peers"
        if knownPeers == nil && env["SHOAL_KNOWN_PEERS"] == nil && !FileManager.default.fileExists(atPath: path) {
            return KnownPeers()
        }
        return try KnownPeers.read(path)
    }
}

/// `shoal status --peer ADDR`: one peer's view of the cluster.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a peer's view: members and their state, load, tasks, steals, workflows, dropped messages.")
    @OptionGroup var options: PeerOptions
    @Flag(help: "Print the status as JSON.") var json = false

    func validate() throws { guard options.peer != nil else { throw ValidationError("--peer tcp://HOST:PORT is required") } }

    func run() async throws {
        try await clientErrors {
            let connection = try options.connect()
            var request = ClientRequest()
            request.status = Shoal_Wire_V1_StatusRequest()
            let (reply, _) = try await connection.ask(request)
            guard case .status(let s)? = reply.kind else { throw ClientError("\(options.address) answered something else") }
            if json {
                print(try s.jsonString())
                return
            }
            print("peer \(PeerID(raw: s.peer).hex) at \(s.address): \(s.slots) slots, \(s.running) running, \(s.ready) ready")
            print("  stored \(s.storedBytes) bytes; tasks run \(s.tasksRun); steals \(s.stealsMade), tasks given \(s.tasksGiven)")
            print("  workflows owned \(s.workflowsOwned), backed up \(s.workflowsBackedUp)")
            print("  messages dropped \(s.messagesDropped), keys rejected \(s.keysRejected)")
            if s.stealRoundTrips > 0 {
                print("  steal round trip p50 \(s.stealRoundTripP50Us) µs, p99 \(s.stealRoundTripP99Us) µs (\(s.stealRoundTrips) requests)")
            }
            if s.fetches > 0 {
                let rate = s.fetchMicros > 0 && s.fetchedBytes >= 1 << 20 ? String(format: ", %.2f GB/s in all", Double(s.fetchedBytes) / Double(s.fetchMicros) / 1e3) : ""
                print("  fetched \(s.fetches) values, \(s.fetchedBytes) bytes\(rate); p50 \(s.fetchP50Us) µs, p99 \(s.fetchP99Us) µs")
            }
            print("members (\(s.members.count)):")
            for m in s.members.sorted(by: { $0.address < $1.address }) {
                let status = (try? WireMapping.status(m.status)).map { "\($0)" } ?? "?"
                print(
                    "  \(PeerID(raw: m.peer).hex)  \(m.address.isEmpty ? "-" : m.address)  \(status)  free \(m.load.freeSlots) ready \(m.load.readyTasks) stored \(m.load.storedBytes)"
                )
            }
        }
    }
}

/// `shoal submit FILE --peer ADDR`: runs a workflow file on a cluster and writes its outputs.
struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a workflow file to a peer, follow it, and write its outputs.",
        discussion: "Exits 0 when it completed, 1 when a task failed it, 2 for bad input.")
    @Argument(help: "The workflow file (YAML).") var file: String
    @OptionGroup var options: PeerOptions
    @Option(help: "Write the outputs here as DIR/<name> (default: out).") var outputDir = "out"
    @Flag(help: "Submit and print the workflow id; do not wait.") var detach = false

    func validate() throws { guard options.peer != nil else { throw ValidationError("--peer tcp://HOST:PORT is required") } }

    func run() async throws {
        try await clientErrors {
            // Checked here first, with the same parser the peer uses: errors cite local paths.
            let workflow = try WorkflowFile.load(path: file)
            try workflow.validate(knownTasks: Set(ExampleTasks.registry.names))
            let text = try String(contentsOfFile: file, encoding: .utf8)
            let folder = URL(fileURLWithPath: file).deletingLastPathComponent().resolvingSymlinksInPath().path
            var names: [String] = []
            var payloads: [WirePayload] = []
            for d in workflow.data {
                guard case .file(let path) = d.value else { continue }
                names.append(Self.relative(path, to: folder))
                payloads.append(WirePayload(try Data(contentsOf: URL(fileURLWithPath: path))))
            }
            var submit = Shoal_Wire_V1_SubmitFile()
            submit.path = file
            submit.text = text
            submit.files = names
            submit.follow = !detach
            var request = ClientRequest()
            request.submit = submit
            let connection = try options.connect()
            let id = await connection.send(request, payloads: payloads)
            let (first, _) = try await connection.next(for: id, timeout: .seconds(30))
            if case .error(let e)? = first.kind { throw ClientError(e.message, reply: e) }
            guard case .submitted(let s)? = first.kind else { throw ClientError("\(options.address) answered something else") }
            let wf = s.workflow
            if detach {
                print("submitted workflow \(wf) to \(PeerID(raw: s.owner).hex) at \(s.ownerAddress) (\(s.tasks) tasks)")
                return
            }
            let line = ProgressLine(workflow.name)
            var follow = Shoal_Wire_V1_Follow()
            follow.workflow = wf
            follow.outputs = s.outputs
            follow.outputData = s.outputData
            var owner = connection
            var followID = id
            var finished: Shoal_Wire_V1_Finished?
            var quiet = 0
            while finished == nil {
                let reply: ClientReply
                do {
                    (reply, _) = try await owner.next(for: followID, timeout: .seconds(2))
                } catch {
                    // Quiet for 2 s: ask again (a Follow is answered at once); twice quiet, the
                    // owner is gone: find the peer that took the workflow over.
                    quiet += 1
                    if quiet < 3 {
                        var again = ClientRequest()
                        again.follow = follow
                        followID = await owner.send(again)
                        continue
                    }
                    line.finish()
                    printError("lost \(owner.address); looking for the workflow's new owner")
                    (owner, followID) = try await Self.newOwner(of: follow, after: owner.address, options: options)
                    printError("following workflow \(workflow.name) at \(owner.address)")
                    quiet = 0
                    continue
                }
                quiet = 0
                switch reply.kind {
                case .progress(let p)?:
                    line.update(done: Int(p.done), total: Int(p.total), failed: Int(p.failed))
                case .finished(let f)?: finished = f
                case .error(let e)?: throw ClientError(e.message, reply: e)
                default: break
                }
            }
            line.finish()
            let f = finished!
            guard f.outcome == .completed else {
                var text = "workflow \(workflow.name) failed: \(f.reason)"
                if f.hasCause {
                    text += "\n  task '\(f.cause.label)': \(f.cause.failure.message)"
                    if f.cause.failure.hasExitStatus { text += " (exit status \(f.cause.failure.exitStatus))" }
                    if !f.cause.failure.stderrTail.isEmpty { text += "\n  stderr: \(f.cause.failure.stderrTail)" }
                }
                printError(text)
                throw ExitCode(1)
            }
            let dir = URL(fileURLWithPath: outputDir)
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            for o in f.outputs where o.present {
                var fetch = Shoal_Wire_V1_FetchOutput()
                fetch.workflow = wf
                fetch.name = o.name
                var r = ClientRequest()
                r.fetchOutput = fetch
                let (_, frames) = try await owner.ask(r, timeout: .seconds(60))
                let bytes = frames.first?.data ?? Data()
                try bytes.write(to: dir.appendingPathComponent(o.name))
            }
            for failure in f.failures {
                printError("note: task '\(failure.label)' failed (\(failure.failure.message)); its failure was \(failure.action)")
            }
            print("workflow \(workflow.name) completed: \(s.tasks) tasks; outputs in \(dir.path)")
        }
    }

    /// The peer that owns the workflow now: each peer of known-peers but `lost` is asked to follow
    /// it, in turn, until one answers with its progress or its end (a minute at most).
    static func newOwner(of follow: Shoal_Wire_V1_Follow, after lost: String, options: PeerOptions) async throws
        -> (ClientConnection, UInt64)
    {
        let candidates = try options.known().keys.keys.sorted().filter { $0 != lost }
        guard !candidates.isEmpty else { throw ClientError("\(lost) is gone and known-peers names no other peer") }
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            for address in candidates {
                let c = try options.connect(to: address)
                var r = ClientRequest()
                r.follow = follow
                let id = await c.send(r)
                guard let (reply, _) = try? await c.next(for: id, timeout: .seconds(2)) else { continue }
                switch reply.kind {
                case .progress?, .finished?: return (c, id)
                default: continue
                }
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw ClientError("no peer took over workflow \(follow.workflow) within a minute of losing \(lost)")
    }

    /// `path` relative to `folder` (with `..` where it is outside it).
    static func relative(_ path: String, to folder: String) -> String {
        let p = URL(fileURLWithPath: path).standardizedFileURL.pathComponents
        let f = URL(fileURLWithPath: folder).standardizedFileURL.pathComponents
        var common = 0
        while common < p.count && common < f.count && p[common] == f[common] { common += 1 }
        return (Array(repeating: "..", count: f.count - common) + p[common...]).joined(separator: "/")
    }
}

/// Runs a client command: a bad-input reply or local error exits 2, another failure 1.
func clientErrors(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as ClientError {
        printError("error: \(e.message)")
        let bad = e.reply?.code == .badInput
        if let r = e.reply, !r.file.isEmpty, r.line > 0 {
            printError("  at \(r.file):\(r.line):\(r.column)\(r.field.isEmpty ? "" : " (field '\(r.field)')")")
        }
        throw ExitCode(bad ? 2 : 1)
    } catch {
        guard let code = exitCode(for: error) else { throw error }
        printError("error: \(error)")
        throw ExitCode(code)
    }
}
