import ArgumentParser
import Foundation
import Logging
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

        func run() async throws {
            var cfg: PeerConfig
            do {
                cfg = try config.map { path throws(YAMLFileError) in try PeerConfig.load(path: path) } ?? PeerConfig()
                let flags: [(String, String?)] = [
                    ("listen", listen), ("advertise", advertise), ("seeds", seeds), ("known-peers", knownPeers),
                    ("data-dir", dataDir), ("slots", slots.map(String.init)), ("key", key), ("peers-allow", peersAllow),
                    ("clients-allow", clientsAllow), ("security", security), ("log-level", logLevel),
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
            let interrupts = Interrupts { _ in
                let done = DispatchSemaphore(value: 0)
                Task {
                    await peer.leave()
                    done.signal()
                }
                _ = done.wait(timeout: .now() + .seconds(5))
                Glibc.exit(0)
            }
            await peer.run { id, address in
                FileHandle.standardOutput.write(Data("ready \(id.hex) \(address)\n".utf8))
            }
            withExtendedLifetime(interrupts) {}
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
    @Option(help: "The peer to talk to: tcp://HOST:PORT.") var peer: String
    @Option(help: "This client's secret key file (default: $SHOAL_CLIENT_KEY, else config/keys/client.key).")
    var key: String?
    @Option(help: "The peer's public key file (default: its line in known-peers).") var peerKey: String?
    @Option(help: "'tcp://HOST:PORT KEY' lines (default: $SHOAL_KNOWN_PEERS, else config/known-peers).")
    var knownPeers: String?
    @Option(help: "curve (default) or none, as the cluster runs.") var security = "curve"

    func connect() throws -> ClientConnection {
        guard security == "curve" || security == "none" else { throw ValidationError("--security must be curve or none") }
        guard security == "curve" else { return try ClientConnection(peer: peer, peerKey: nil, key: nil) }
        let env = ProcessInfo.processInfo.environment
        let keyPath = key ?? env["SHOAL_CLIENT_KEY"] ?? "config/keys/client.key"
        let pair = try CurveKeyPair.read(secretKeyFile: keyPath)
        var peerPublic: CurveKey?
        if let peerKey {
            peerPublic = try CurveKey.read(file: peerKey)
        } else {
            let known = knownPeers ?? env["SHOAL_KNOWN_PEERS"] ?? "config/known-peers"
            peerPublic = try KnownPeers.read(known).keys[peer]
        }
        return try ClientConnection(peer: peer, peerKey: peerPublic, key: pair)
    }
}

/// `shoal status --peer ADDR`: one peer's view of the cluster.
struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a peer's view: members and their state, load, tasks, steals, workflows, dropped messages.")
    @OptionGroup var options: PeerOptions
    @Flag(help: "Print the status as JSON.") var json = false

    func run() async throws {
        try await clientErrors {
            let connection = try options.connect()
            var request = ClientRequest()
            request.status = Shoal_Wire_V1_StatusRequest()
            let (reply, _) = try await connection.ask(request)
            guard case .status(let s)? = reply.kind else { throw ClientError("\(options.peer) answered something else") }
            if json {
                print(try s.jsonString())
                return
            }
            print("peer \(PeerID(raw: s.peer).hex) at \(s.address): \(s.slots) slots, \(s.running) running, \(s.ready) ready")
            print("  stored \(s.storedBytes) bytes; tasks run \(s.tasksRun); steals \(s.stealsMade), tasks given \(s.tasksGiven)")
            print("  workflows owned \(s.workflowsOwned), backed up \(s.workflowsBackedUp)")
            print("  messages dropped \(s.messagesDropped), keys rejected \(s.keysRejected)")
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
            guard case .submitted(let s)? = first.kind else { throw ClientError("\(options.peer) answered something else") }
            let wf = s.workflow
            if detach {
                print("submitted workflow \(wf) to \(PeerID(raw: s.owner).hex) at \(s.ownerAddress) (\(s.tasks) tasks)")
                return
            }
            let line = ProgressLine(workflow.name)
            var finished: Shoal_Wire_V1_Finished?
            while finished == nil {
                let (reply, _) = try await connection.next(for: id, timeout: .seconds(3_600))
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
                let (_, frames) = try await connection.ask(r, timeout: .seconds(60))
                let bytes = frames.first?.data ?? Data()
                try bytes.write(to: dir.appendingPathComponent(o.name))
            }
            for failure in f.failures {
                printError("note: task '\(failure.label)' failed (\(failure.failure.message)); its failure was \(failure.action)")
            }
            print("workflow \(workflow.name) completed: \(s.tasks) tasks; outputs in \(dir.path)")
        }
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
