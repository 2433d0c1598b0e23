import ArgumentParser
import Foundation
import ShoalCore
import ShoalWire

/// `shoal bench wire`: how fast the wire format turns the machines' messages into frames and back
/// (`Wire.encode`/`Wire.decode`: the mapping to protobuf plus swift-protobuf itself), beside
/// swift-protobuf alone serializing and parsing the same envelope in the same run (the ceiling:
/// what the mapping costs is the gap). Three messages a real peer sends most: a membership ping
/// with gossip, a steal reply granting tasks with their calls, and a record create of a large plan.
struct BenchWire: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wire",
        abstract: "Wire format: encode/decode rates of a ping, a steal reply and a record create vs swift-protobuf alone.")

    @Option(help: "Tasks granted in one steal reply.") var granted = 16
    @Option(help: "Calls of the record create's plan.") var calls = 100_000
    @Option(help: "Messages per run for the ping and the steal reply.") var messages = 20_000
    @Option(help: "Runs per measurement (the median is printed).") var runs = 5

    func validate() throws {
        guard granted >= 1 && granted <= 4_096 else { throw refuse("--granted must be 1 to 4096, got \(granted)") }
        guard calls >= 1 && calls <= 1 << 20 else { throw refuse("--calls must be 1 to \(1 << 20), got \(calls)") }
        guard messages >= 1 && messages <= 10_000_000 else {
            throw refuse("--messages must be 1 to 10000000, got \(messages)")
        }
        guard runs >= 1 && runs <= 100 else { throw refuse("--runs must be 1 to 100, got \(runs)") }
    }

    func run() async throws {
        print("wire format, median of \(runs) runs; protobuf = swift-protobuf alone on the same envelope, same run")
        let wf = WorkflowID(raw: 0xABCD)
        let ping = PeerMessage.membership(
            .ping(
                sequence: 77,
                updates: (0..<6).map {
                    MemberUpdate(
                        peer: PeerID(raw: 1_000 + $0), status: .alive, incarnation: 3,
                        load: PeerLoad(freeSlots: 2, readyTasks: 40, storedBytes: 1 << 30, catalogue: 0xFF), loadVersion: 9)
                }))
        try measure("membership ping, 6 updates", ping, count: messages, unit: "messages", per: 1)

        let call = ExecutableCall(
            body: .exec(command: "cat {in:a} {in:b} > {out:c}"), accesses: [.init(0, .in), .init(1, .in), .init(2, .out)],
            label: "join")
        let tasks = (0..<granted).map { i -> StealableTask in
            var t = StealableTask(
                id: TaskRef(wf, i), owner: PeerID(raw: 5), catalogueKey: CatalogueKey.exec,
                inputs: [
                    DataLocation(datum: VersionRef(wf, 2 * i), bytes: 4_096, holder: PeerID(raw: 5), checksum: 0x1234),
                    DataLocation(datum: VersionRef(wf, 2 * i + 1), bytes: 4_096, holder: PeerID(raw: 6), checksum: 0x5678),
                ],
                outputs: [VersionRef(wf, 100_000 + i)])
            t.call = call
            return t
        }
        try measure(
            "steal reply, \(granted) tasks with calls", .steal(.reply(requestID: 1, granted: tasks)), count: messages,
            unit: "tasks", per: granted)

        let spec = WorkflowSpec(
            name: "bench", dataCount: calls + 1,
            tasks: (0..<calls).map {
                WorkflowTaskSpec(
                    body: .registered(name: "step", arguments: []), accesses: [.init($0, .in), .init($0 + 1, .out)], label: "step")
            })
        let plan = try WorkflowPlan(spec)
        let create = PeerMessage.work(
            .recordCreate(
                workflow: wf, owner: PeerID(raw: 5), backups: [PeerID(raw: 6), PeerID(raw: 7)], plan: plan,
                initial: [ObjectValue(bytes: 8, content: 1)]))
        try measure("record create, \(calls) calls", create, count: 1, unit: "calls", per: calls)
    }

    /// Encodes and decodes `message` `count` times per run; prints the rate of each way in `unit`
    /// (`per` of them a message) and the header's size, beside swift-protobuf alone.
    private func measure(_ name: String, _ message: PeerMessage, count: Int, unit: String, per: Int) throws {
        let wire = WireMessage(body: .peer(message, contacts: []))
        let frames = Wire.encode(wire)
        let envelope = Wire.header(of: wire)
        let bytes = frames[0].count
        var sink = 0
        let encode = median {
            for _ in 0..<count { sink &+= Wire.encode(wire)[0].count }
        }
        let decode = try median {
            for _ in 0..<count { if case .peer = try Wire.decode(frames).body { sink &+= 1 } }
        }
        let serialize = try median {
            for _ in 0..<count { sink &+= try envelope.serializedData().count }
        }
        let parse = try median {
            for _ in 0..<count { sink &+= try WireEnvelope(serializedBytes: frames[0]).version == 1 ? 1 : 0 }
        }
        if sink == -1 { print("") }
        let n = Double(count * per)
        print("\(name): header \(bytes) bytes")
        for (way, ours, reference) in [("encode", encode, serialize), ("decode", decode, parse)] {
            print(
                "  \(way): \(rate(n / ours)) \(unit)/s (\(format(Double(bytes * count) / ours / 1e6, 0)) MB/s); "
                    + "protobuf alone \(rate(n / reference)) \(unit)/s; ratio \(format(reference / ours, 2))")
        }
    }

    private func rate(_ r: Double) -> String { r >= 1e6 ? "\(format(r / 1e6, 2)) M" : "\(format(r / 1e3, 1)) k" }

    private func median(_ body: () throws -> Void) rethrows -> Double { try medianSeconds(runs: runs, body) }
}
