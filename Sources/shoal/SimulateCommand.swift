import ArgumentParser
import Foundation
import ShoalCore
import ShoalSimulation
import Yams

/// `shoal simulate SCENARIO`: a whole cluster in virtual time, deterministic from a seed.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a cluster in virtual time from a scenario file, deterministically from a seed.",
        discussion: """
            Peers run the real protocol machines over a simulated network (latency, bandwidth, loss, \
            duplication, reordering, partitions) with scheduled or --swarm faults. Prints a report; exits 1 \
            with the seed and the command that replays it when an invariant is violated, 2 on a bad scenario.
            """)

    @Argument(help: "The scenario (YAML), e.g. Simulations/join-storm.yaml.") var scenario: String
    @Option(help: "Seed of everything random in the run.") var seed: UInt64 = 1
    @Flag(help: "Draw the faults themselves from the seed (crashes, restarts, a partition, loss and duplication bursts).")
    var swarm = false
    @Option(help: "Write the timeline as Chrome trace-event JSON (open in Perfetto).") var trace: String?
    @Option(help: "Run this many consecutive seeds from --seed and summarise (swarm testing).") var seeds = 1

    func run() async throws {
        let loaded: Scenario
        do {
            loaded = try ScenarioFile.load(path: scenario)
        } catch {
            printError("error: \(error)")
            throw ExitCode(2)
        }
        var failures: [UInt64] = []
        let clock = ContinuousClock()
        let started = clock.now
        var events = 0
        for s in seed..<(seed + UInt64(max(1, seeds))) {
            var sc = loaded
            if swarm {
                var g = SeededGenerator(seed: s ^ 0x5357_4152_4D00_0000)
                let ids = (0..<sc.peers).map { PeerID(raw: UInt64($0)) }
                sc.faults = FaultPlan.swarm(peers: ids, duration: sc.duration, generator: &g, intensity: 1)
            }
            var simulation = ClusterSimulation(scenario: sc, seed: s, recordTrace: trace != nil && seeds == 1)
            let report = simulation.run()
            events += report.events
            if seeds == 1 {
                print(Simulate.describe(report))
                if let trace, let json = simulation.traceJSON {
                    try json.write(toFile: trace, atomically: true, encoding: .utf8)
                    print("trace: \(trace)")
                }
            }
            if !report.passed {
                failures.append(s)
                if seeds > 1 { print("seed \(s): " + report.violations.joined(separator: "; ")) }
            }
        }
        let wall = clock.now - started
        let seconds = Double(wall.components.seconds) + Double(wall.components.attoseconds) * 1e-18
        if seeds > 1 {
            print("\(seeds) seeds, \(seeds - failures.count) passed, \(failures.count) failed; \(events) events in \(String(format: "%.2f", seconds)) s (\(Int(Double(events) / seconds)) events/s)")
        } else {
            print(String(format: "wall time %.2f s, %d events/s", seconds, Int(Double(events) / max(seconds, 1e-9))))
        }
        if let first = failures.first {
            printError("invariant violated with seed \(first); replay: shoal simulate \(scenario) --seed \(first)\(swarm ? " --swarm" : "")")
            throw ExitCode(1)
        }
    }

    static func describe(_ r: SimulationReport) -> String {
        var lines = [
            "scenario \(r.scenario), seed \(r.seed): \(r.peers) peers, \(String(format: "%.1f", r.virtualSeconds)) s of virtual time, \(r.events) events",
            "messages: \(r.network.sent) sent, \(r.network.delivered) delivered, \(r.network.dropped) dropped, \(r.network.duplicated) duplicated, \(r.network.partitioned) cut by partitions; \(r.network.bytesSent) bytes",
            "membership: \(r.statusChanges) status changes; "
                + (r.convergedAfterSeconds.map { String(format: "converged %.2f s after the last fault or join", $0) } ?? "did not converge"),
            "faults injected: \(r.faultsInjected.count)",
        ]
        lines += r.faultsInjected.prefix(20).map { "  \($0)" }
        for w in r.workflows {
            var line = "workflow \(w.name) (\(w.tasks) tasks): \(w.status.rawValue)"
            if let m = w.makespanSeconds { line += String(format: ", makespan %.3f s", m) }
            if let ok = w.resultsMatch { line += ok ? ", results equal the sequential run's" : ", RESULTS DIFFER" }
            if let reason = w.reason { line += " (\(reason))" }
            if w.owners.count > 1 { line += ", owners " + w.owners.map { "p\($0)" }.joined(separator: " then ") }
            lines.append(line)
        }
        if !r.workflows.isEmpty {
            let k = r.work
            let t = r.tasksPerPeer
            let perPeer = t.count == 3 ? "least \(t[0]), median \(t[1]), most \(t[2])" : "-"
            lines.append("tasks: \(k.tasksRun) run (per peer: \(perPeer)), \(k.resultsApplied) results applied, \(k.duplicateResults) duplicates discarded, \(k.tasksRecomputed) recomputed from lineage, \(k.tasksRequeued) re-queued")
            lines.append("steals: \(r.steal.stealsTried) tried, \(r.steal.stealsGranted) granted, \(r.steal.tasksStolen) tasks stolen, \(r.steal.timeouts) timed out")
            lines.append("data: \(k.fetches) fetches, \(k.bytesFetched) bytes moved, \(k.corruptTransfers) corrupt transfers caught; \(k.takeovers) owner takeovers")
        }
        if let o = r.objects {
            lines.append("objects: \(o.putsIssued) puts, \(o.putsAcknowledged) acknowledged, \(o.putsFailed) failed; \(o.objectsFound) of \(o.objectsAcknowledged) acknowledged objects held by a live peer at the end; \(o.transfers) re-replications (\(o.bytesTransferred) bytes), \(o.corruptTransfers) corrupt transfers caught; at most \(o.mostPeersDown) peers down at once")
        }
        lines.append("invariants checked: " + r.invariantsChecked.joined(separator: "; "))
        lines.append(r.passed ? "result: all invariants hold" : "result: VIOLATED: " + r.violations.joined(separator: "; "))
        return lines.joined(separator: "\n")
    }
}

/// The YAML form of a scenario, in friendly units.
///
/// ```yaml
/// name: partition-heals
/// peers: 32
/// duration: 40            # seconds of virtual time
/// seeds: 2                # peers 0..<seeds are the seeds the others join through
/// joinSpread: 1           # seconds over which the other peers start (0: a join storm)
/// protocolPeriodMs: 200
/// convergeWithin: 15      # seconds after the last fault by which membership must agree
/// network: { latencyMicros: 200, jitterMicros: 50, bandwidthMbps: 10000, drop: 0, duplicate: 0, reorder: 0 }
/// faults:
///   - { at: 5, split: 2 }                 # partition the peers into 2 halves by id
///   - { at: 6, partition: [[0, 1], [2, 3]] }
///   - { at: 15, heal: true }
///   - { at: 8, crash: 3 }
///   - { at: 20, restart: 3 }
///   - { at: 10, drop: 0.1 }
///   - { at: 12, duplicate: 0.05 }
/// ```
struct ScenarioFile: Decodable {
    struct Network: Decodable {
        var latencyMicros: Int64?
        var jitterMicros: Int64?
        var bandwidthMbps: Int64?
        var drop: Double?
        var duplicate: Double?
        var reorder: Double?
    }

    struct FaultEntry: Decodable {
        var at: Double
        var crash: UInt64?
        var restart: UInt64?
        var keepStore: Bool?
        var split: Int?
        var partition: [[UInt64]]?
        var heal: Bool?
        var drop: Double?
        var duplicate: Double?
    }

    var name: String
    var peers: Int
    var duration: Double
    var seeds: Int?
    var joinSpread: Double?
    var protocolPeriodMs: Int64?
    var convergeWithin: Double?
    var network: Network?
    var faults: [FaultEntry]?
    var slots: Int?
    var workflows: [WorkflowEntry]?
    var objects: Objects?

    struct Objects: Decodable {
        var keys: Int
        var puts: Int
        var start: Double?
        var every: Double?
        var bytes: UInt64?
        var replicas: Int?
    }

    struct Stencil: Decodable {
        var width: Int
        var steps: Int
    }

    struct WorkflowEntry: Decodable {
        var stencil: Stencil?
        var independent: Int?
        var crossCorrelation: Int?
        var at: Double?
        var submitter: Int?
        var taskMicros: Int64?
        var bytes: UInt64?
    }

    struct Invalid: Error, CustomStringConvertible {
        var description: String
    }

    static func load(path: String) throws -> Scenario {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw Invalid(description: "\(path): cannot read the file")
        }
        let file: ScenarioFile
        do {
            file = try YAMLDecoder().decode(ScenarioFile.self, from: text)
        } catch let DecodingError.keyNotFound(key, context) {
            throw Invalid(description: "\(path): missing '\(key.stringValue)'\(where_(context))")
        } catch let DecodingError.typeMismatch(type, context) {
            throw Invalid(description: "\(path): '\(context.codingPath.map(\.stringValue).joined(separator: "."))' is not \(type)")
        } catch {
            throw Invalid(description: "\(path): \(error)")
        }
        return try file.scenario(path: path)
    }

    static func where_(_ context: DecodingError.Context) -> String {
        context.codingPath.isEmpty ? "" : " in '\(context.codingPath.map(\.stringValue).joined(separator: "."))'"
    }

    func scenario(path: String) throws -> Scenario {
        guard peers > 0, peers <= 1_000_000 else { throw Invalid(description: "\(path): 'peers' must be 1 to 1,000,000") }
        guard duration > 0 else { throw Invalid(description: "\(path): 'duration' must be positive") }
        var net = NetworkSettings()
        if let n = network {
            if let v = n.latencyMicros { net.latency = .microseconds(v) }
            if let v = n.jitterMicros { net.jitter = .microseconds(v) }
            if let v = n.bandwidthMbps { net.bandwidthBytesPerSecond = v * 125_000 }
            if let v = n.drop { net.dropProbability = v }
            if let v = n.duplicate { net.duplicateProbability = v }
            if let v = n.reorder { net.reorderProbability = v }
        }
        var plan: [ScheduledFault] = []
        for (i, f) in (faults ?? []).enumerated() {
            let at = Interval(nanoseconds: Int64(f.at * 1e9))
            let fault: Fault
            if let p = f.crash {
                fault = .crash(peer: PeerID(raw: p))
            } else if let p = f.restart {
                fault = .restart(peer: PeerID(raw: p), keepStore: f.keepStore ?? true)
            } else if let k = f.split {
                guard k > 0 else { throw Invalid(description: "\(path): faults[\(i)]: 'split' must be positive") }
                let groups = (0..<k).map { g in
                    (0..<peers).filter { $0 * k / peers == g }.map { PeerID(raw: UInt64($0)) }
                }
                fault = .partition(groups: groups)
            } else if let groups = f.partition {
                fault = .partition(groups: groups.map { $0.map { PeerID(raw: $0) } })
            } else if f.heal == true {
                fault = .heal
            } else if let p = f.drop {
                fault = .setDrop(probability: p)
            } else if let p = f.duplicate {
                fault = .setDuplicate(probability: p)
            } else {
                throw Invalid(description: "\(path): faults[\(i)] names no fault (crash, restart, split, partition, heal, drop, duplicate)")
            }
            plan.append(ScheduledFault(at: at, fault: fault))
        }
        var flows: [ScenarioWorkflow] = []
        for (i, w) in (workflows ?? []).enumerated() {
            let shape: ScenarioWorkflow.Shape
            let field = "\(path): workflows[\(i)]"
            if let s = w.stencil {
                guard s.width > 0, s.steps > 0 else { throw Invalid(description: "\(field): stencil width and steps must be positive") }
                shape = .stencil(width: s.width, steps: s.steps)
            } else if let n = w.independent {
                guard n > 0 else { throw Invalid(description: "\(field): 'independent' must be positive") }
                shape = .independent(count: n)
            } else if let f = w.crossCorrelation {
                guard f > 0 else { throw Invalid(description: "\(field): 'crossCorrelation' must be positive") }
                shape = .crossCorrelation(fragments: f)
            } else {
                throw Invalid(description: "\(field) names no workflow (stencil, independent, crossCorrelation)")
            }
            let submitter = w.submitter ?? 0
            guard submitter >= 0, submitter < peers else {
                throw Invalid(description: "\(field): 'submitter' must be a peer, 0 to \(peers - 1)")
            }
            flows.append(
                ScenarioWorkflow(
                    shape: shape, atSeconds: w.at ?? 0, submitter: submitter, taskMicros: max(0, w.taskMicros ?? 1_000),
                    bytes: w.bytes ?? 1_024))
        }
        var objectWorkload: ObjectWorkload?
        if let o = objects {
            guard o.keys > 0, o.puts >= 0 else { throw Invalid(description: "\(path): objects: 'keys' must be positive and 'puts' not negative") }
            let r = o.replicas ?? 3
            guard r >= 1, r <= 16 else { throw Invalid(description: "\(path): objects: 'replicas' must be 1 to 16") }
            objectWorkload = ObjectWorkload(
                keys: o.keys, puts: o.puts, startSeconds: o.start ?? 1, everySeconds: max(0, o.every ?? 0.05),
                bytes: o.bytes ?? 4_096, replicas: r)
        }
        let slotCount = slots ?? 4
        guard slotCount > 0 else { throw Invalid(description: "\(path): 'slots' must be positive") }
        return Scenario(
            name: name, peers: peers, durationSeconds: duration, seeds: max(1, min(seeds ?? 1, peers)),
            joinSpreadSeconds: joinSpread ?? 0, network: net, protocolPeriodMs: protocolPeriodMs ?? 200,
            faults: FaultPlan(plan), convergeWithinSeconds: convergeWithin ?? 10, workflows: flows, slots: slotCount,
            objects: objectWorkload)
    }
}
