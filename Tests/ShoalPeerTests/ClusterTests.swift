import Foundation
import ShoalCore
import ShoalPeer
import ShoalTestSupport
import ShoalTransport
import ShoalWire
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Real peer processes on loopback: the cluster forms, runs a workflow file across its peers, and
/// survives SIGKILL and SIGTERM of a peer and of a workflow's owner. Serialized: each test starts
/// three peers, and two cores are all a machine here has.
@Suite("Real peers on loopback", .serialized)
struct ClusterTests {
    /// `shoal run`'s outputs of a workflow file (the reference every cluster run must equal).
    static func localOutputs(_ file: String, in scratch: ScratchDirectory) async throws -> [String: Data] {
        let out = scratch.appending("local-out").path
        let r = try await offThePool { try ChildProcess.shoal(["run", file, "--output-dir", out], timeoutSeconds: 120) }
        guard r.status == 0 else { throw Failure("shoal run failed: \(r.stderr)") }
        return try outputs(in: out)
    }

    static func outputs(in folder: String) throws -> [String: Data] {
        var found: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            found[name] = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
        }
        return found
    }

    @Test func threePeersFormAClusterAndEachSeesAllThreeAlive() async throws {
        let cluster = try TestCluster("forms")
        defer { cluster.stop() }
        try await cluster.start()
        for n in cluster.names {
            let s = try await cluster.waitForStatus(n) { TestCluster.aliveCount($0) == 3 }
            #expect(s.members.count == 3)
            #expect(Set(s.members.map(\.address)) == Set(cluster.names.map(cluster.address)))
        }
        // The CLI says the same.
        let r = try await cluster.shoal(["status", "--peer", cluster.address("c")])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.components(separatedBy: "  alive  ").count - 1 == 3, "\(r.stdout)")
    }

    @Test func aWorkflowSubmittedAtBRunsOnAllThreeWithShoalRunsOutputs() async throws {
        let cluster = try TestCluster("submit")
        defer { cluster.stop() }
        try await cluster.startAndWaitForAll()
        let file = Repository.example("fan-out.yaml")
        let expected = try await Self.localOutputs(file, in: cluster.scratch)
        let out = cluster.scratch.appending("cluster-out").path
        let r = try await cluster.shoal(["submit", file, "--peer", cluster.address("b"), "--output-dir", out])
        #expect(r.status == 0, "\(r.stderr)\n\(cluster.logs)")
        #expect(try Self.outputs(in: out) == expected)
        var ran = 0, steals: UInt64 = 0
        for n in cluster.names {
            let s = try await cluster.status(n)
            #expect(s.tasksRun > 0, "peer \(n) ran no task: \(s)")
            ran += Int(s.tasksRun)
            steals += s.stealsMade
        }
        #expect(ran >= 25)
        #expect(steals > 0)
    }

    @Test func sigkillOfANonOwnerMidWorkflowLosesNothing() async throws {
        try await killMidWorkflow(victim: "c", signal: SIGKILL, owner: "b")
    }

    @Test func sigkillOfTheOwnerMidWorkflowABackupTakesItOverAndSubmitFollows() async throws {
        try await killMidWorkflow(victim: "b", signal: SIGKILL, owner: "b")
    }

    @Test func sigtermOfAPeerIsAGracefulLeaveWithExitZero() async throws {
        let victim = try await killMidWorkflow(victim: "c", signal: SIGTERM, owner: "a")
        #expect(victim.status == 0, "the peer SIGTERM stopped exited \(victim.status): \(victim.stderr.suffix(2_000))")
        #expect(victim.stderr.contains("leaving the cluster"))
    }

    @Test func sigtermOfTheOwnerExitsZeroAndABackupTakesTheWorkflowOver() async throws {
        let victim = try await killMidWorkflow(victim: "b", signal: SIGTERM, owner: "b")
        #expect(victim.status == 0, "the owner SIGTERM stopped exited \(victim.status): \(victim.stderr.suffix(2_000))")
    }

    /// Submits fan-out.yaml at `owner`, sends `signal` to `victim` once tasks run, and checks the
    /// workflow still completes with `shoal run`'s outputs. Returns how the victim ended.
    @discardableResult
    func killMidWorkflow(victim: String, signal: Int32, owner: String) async throws -> ChildProcess.Result {
        let cluster = try TestCluster("kill-\(victim)-\(signal)")
        defer { cluster.stop() }
        try await cluster.startAndWaitForAll()
        let file = Repository.example("fan-out.yaml")
        let expected = try await Self.localOutputs(file, in: cluster.scratch)
        let out = cluster.scratch.appending("cluster-out").path
        let submit = try cluster.submitInBackground(file, at: owner, outputDir: out)
        // Mid-workflow: once the owner has handed tasks out.
        _ = try await cluster.waitForStatus(owner, seconds: 20) { $0.tasksGiven > 0 || $0.tasksRun > 2 }
        cluster.kill(victim, signal)
        let r = try await offThePool { try submit.wait(timeoutSeconds: 90) }
        #expect(r.status == 0, "submit: \(r.stderr)\n\(cluster.logs)")
        #expect(try Self.outputs(in: out) == expected)
        return try await cluster.waitForExit(victim, timeoutSeconds: 20)
    }

    @Test func aRestartedPeerRejoinsAndServesItsShardsDataAgain() async throws {
        let cluster = try TestCluster("restart")
        defer { cluster.stop() }
        try await cluster.startAndWaitForAll()
        // An object on every peer (R = 3 by default), so c's shard holds a replica.
        let bytes = Array("kept in c's shard".utf8)
        var put = ClientRequest()
        put.put.name = "kept"
        let (stored, _) = try await cluster.ask("a", put, payloads: [WirePayload(bytes)])
        guard case .stored? = stored.kind else { throw Failure("the put was answered \(stored)") }
        cluster.kill("c")
        _ = try await cluster.waitForExit("c", timeoutSeconds: 10)
        _ = try await cluster.waitForStatus("a") { TestCluster.aliveCount($0) == 2 }
        try await cluster.start("c")
        let s = try await cluster.waitForStatus("a", seconds: 30) { TestCluster.aliveCount($0) == 3 }
        #expect(s.members.count == 3)
        _ = try await cluster.waitForStatus("c") { TestCluster.aliveCount($0) == 3 }
        // Only c is left: what it reads is what its shard kept across the restart.
        cluster.kill("a")
        cluster.kill("b")
        _ = try await cluster.waitForExit("a", timeoutSeconds: 10)
        _ = try await cluster.waitForExit("b", timeoutSeconds: 10)
        var get = ClientRequest()
        get.get.name = "kept"
        let (value, frames) = try await cluster.ask("c", get, timeout: .seconds(30))
        guard case .value(let v)? = value.kind else { throw Failure("the get was answered \(value)") }
        #expect(v.found)
        #expect(frames.first?.bytes == bytes)
    }

    @Test func aBadConfigNamesTheFileLineAndFieldAndExitsTwo() async throws {
        let scratch = try ScratchDirectory("bad-config")
        defer { scratch.remove() }
        let path = scratch.appending("peer.yaml").path
        try "listen: tcp://127.0.0.1:7101\nslots: many\nsecurity: none\n".write(toFile: path, atomically: true, encoding: .utf8)
        let r = try await offThePool { try ChildProcess.shoal(["peer", "start", "--config", path]) }
        #expect(r.status == 2)
        #expect(r.stderr.contains("\(path):2:8: field 'slots'"), "\(r.stderr)")
        try "listen: tcp://127.0.0.1:7101\nsecurty: none\n".write(toFile: path, atomically: true, encoding: .utf8)
        let typo = try await offThePool { try ChildProcess.shoal(["peer", "start", "--config", path]) }
        #expect(typo.status == 2)
        #expect(typo.stderr.contains("\(path):2:1: field 'securty': unknown field (did you mean 'security'?)"), "\(typo.stderr)")
    }
}
