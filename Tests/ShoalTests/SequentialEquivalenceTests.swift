import Testing

@testable import Shoal

/// The property: a workflow run in parallel gives the same values as the same program run
/// sequentially, one task after the other in submission order.
///
/// Random programs over a few `Int` data: each task accesses a random subset of the data with
/// random directions. `in` and `inout` values feed the task's result; `out` writes a function of
/// them; `inout` applies a non-commutative update (`x * 3 + k`); `commutative` adds `k`, which
/// commutes, so any order of a group's members gives one answer. Now and then the program waits
/// on a datum in the middle.
private let dataCount = 4

private struct Access: Codable, Sendable, Hashable {
    var datum: Int
    var direction: Direction
    var k: Int
}

private struct Step: Codable, Sendable, Hashable {
    var salt: Int
    var accesses: [Access]
    /// A datum the program waits on after submitting this task.
    var waitAfter: Int?
}

private struct Program: CustomStringConvertible {
    var seed: UInt64
    /// Initial values; nil for a placeholder that a task must write first.
    var initial: [Int?]
    var steps: [Step]

    var description: String {
        var lines = ["seed \(seed), initial \(initial.map { $0.map(String.init) ?? "-" })"]
        for (i, s) in steps.enumerated() {
            let accesses = s.accesses.map { "d\($0.datum) \($0.direction) \($0.k)" }.joined(separator: ", ")
            lines.append("  t\(i) salt \(s.salt): [\(accesses)]" + (s.waitAfter.map { "; wait d\($0)" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}

/// What a program shows: the values it waited on, every datum's final value, every task's result.
private struct Observation: Equatable, CustomStringConvertible {
    var waited: [Int] = []
    var finals: [Int?] = []
    var results: [Int] = []
    var description: String { "waited \(waited)\n finals \(finals)\n results \(results)" }
}

private func generate(seed: UInt64, maxTasks: Int) -> Program {
    var g = SeededGenerator(seed: seed)
    let initial: [Int?] = (0..<dataCount).map { d in d < 2 ? Int.random(in: -9...9, using: &g) : nil }
    var defined = initial.map { $0 != nil }
    let directions: [Direction] = [.in, .out, .inout, .commutative]
    var steps: [Step] = []
    for _ in 0..<Int.random(in: 1...maxTasks, using: &g) {
        var accesses: [Access] = []
        for d in 0..<dataCount where Bool.random(using: &g) {
            var direction = directions.randomElement(using: &g)!
            if !defined[d], direction.reads { direction = .out }
            accesses.append(Access(datum: d, direction: direction, k: Int.random(in: -5...5, using: &g)))
        }
        accesses.shuffle(using: &g)
        for a in accesses { defined[a.datum] = true }
        var waitAfter: Int? = nil
        if Int.random(in: 0..<10, using: &g) == 0 {
            waitAfter = (0..<dataCount).filter { defined[$0] }.randomElement(using: &g)
        }
        steps.append(Step(salt: Int.random(in: 0..<1000, using: &g), accesses: accesses, waitAfter: waitAfter))
    }
    return Program(seed: seed, initial: initial, steps: steps)
}

private func mix(_ r: Int, _ v: Int) -> Int { r &* 31 &+ v }

/// The reference: runs the program's tasks one after the other.
private func interpret(_ p: Program) -> Observation {
    var state = p.initial
    var o = Observation()
    for s in p.steps {
        var result = s.salt
        for a in s.accesses where a.direction == .in || a.direction == .inout {
            result = mix(result, state[a.datum]!)
        }
        for a in s.accesses {
            switch a.direction {
            case .inout: state[a.datum] = state[a.datum]! &* 3 &+ a.k
            case .out: state[a.datum] = result &+ a.k
            case .commutative: state[a.datum] = state[a.datum]! &+ a.k
            case .in, .concurrent: break
            }
        }
        o.results.append(result)
        if let w = s.waitAfter { o.waited.append(state[w]!) }
    }
    o.finals = state
    return o
}

private struct Call: Codable, Sendable {
    var refs: [DataRef<Int>]
    var step: Step
}

/// The same task body as `interpret` applies, written against the `TaskContext`.
private let programTask = TaskDefinition<Call, Int>("step") { call, context in
    var result = call.step.salt
    for (ref, a) in zip(call.refs, call.step.accesses) where a.direction == .in || a.direction == .inout {
        result = mix(result, try context.read(ref))
    }
    for (ref, a) in zip(call.refs, call.step.accesses) {
        switch a.direction {
        case .inout: try context.update(ref) { $0 = $0 &* 3 &+ a.k }
        case .out: try context.write(ref, result &+ a.k)
        case .commutative: try context.update(ref) { $0 = $0 &+ a.k }
        case .in, .concurrent: break
        }
    }
    return result
}

private func parameter(_ ref: DataRef<Int>, _ d: Direction) -> DataParameter {
    switch d {
    case .in: .in(ref)
    case .out: .out(ref)
    case .inout: .inout(ref)
    case .commutative: .commutative(ref)
    case .concurrent: preconditionFailure("Int data are not shared objects")
    }
}

/// Submits through the variadic API that returns the task's result.
private func submit(_ wf: Workflow, _ call: Call, _ ps: [DataParameter]) -> DataRef<Int> {
    switch ps.count {
    case 0: wf.submit(programTask, call)
    case 1: wf.submit(programTask, call, ps[0])
    case 2: wf.submit(programTask, call, ps[0], ps[1])
    case 3: wf.submit(programTask, call, ps[0], ps[1], ps[2])
    case 4: wf.submit(programTask, call, ps[0], ps[1], ps[2], ps[3])
    default: preconditionFailure("at most \(dataCount) data per task")
    }
}

private func execute(_ p: Program, _ settings: RuntimeSettings) async throws -> Observation {
    try await Shoal.run(RunOptions(runtime: settings)) { wf in
        let refs: [DataRef<Int>] = p.initial.enumerated().map { d, v in
            v.map { wf.value($0, name: "d\(d)") } ?? wf.placeholder(Int.self, name: "d\(d)")
        }
        var o = Observation()
        var results: [DataRef<Int>] = []
        var defined = p.initial.map { $0 != nil }
        for s in p.steps {
            let call = Call(refs: s.accesses.map { refs[$0.datum] }, step: s)
            results.append(submit(wf, call, s.accesses.map { parameter(refs[$0.datum], $0.direction) }))
            for a in s.accesses { defined[a.datum] = true }
            if let w = s.waitAfter { o.waited.append(try await wf.wait(on: refs[w])) }
        }
        for (d, ref) in refs.enumerated() {
            o.finals.append(defined[d] ? try await wf.wait(on: ref) : nil)
        }
        for r in results { o.results.append(try await wf.wait(on: r)) }
        return o
    }
}

/// Runs the programs of `seeds` and compares each with its sequential interpretation; reports
/// the first program that differs with its seed and listing.
private func check(seeds: ClosedRange<UInt64>, maxTasks: Int = 60, _ settings: RuntimeSettings) async {
    for seed in seeds {
        let program = generate(seed: seed, maxTasks: maxTasks)
        let expected = interpret(program)
        do {
            let actual = try await execute(program, settings)
            if actual != expected {
                Issue.record(
                    "seed \(seed) differs from the sequential run\nexpected \(expected)\nactual   \(actual)\n\(program)")
                return
            }
        } catch {
            Issue.record("seed \(seed) threw \(error)\n\(program)")
            return
        }
    }
}

@Suite struct SequentialEquivalenceTests {
    @Test func randomProgramsMatchTheirSequentialRunOnTwoWorkers() async {
        await check(seeds: 1...200, RuntimeSettings(workers: 2))
    }

    @Test func randomProgramsMatchTheirSequentialRunOnOneWorker() async {
        await check(seeds: 1001...1100, RuntimeSettings(workers: 1))
    }

    @Test func randomProgramsMatchTheirSequentialRunWithTinyBatchesAndLittleRoom() async {
        await check(seeds: 2001...2100, RuntimeSettings(workers: 2, takeBatchMax: 1, submitBatchMax: 3, maxLiveTasks: 5))
    }

    @Test func theInterpreterFollowsTheDirections() {
        let p = Program(
            seed: 0, initial: [2, 5, nil, nil],
            steps: [
                Step(salt: 1, accesses: [Access(datum: 0, direction: .inout, k: 1)], waitAfter: 0),
                Step(salt: 0, accesses: [Access(datum: 1, direction: .in, k: 0), Access(datum: 2, direction: .out, k: 4)]),
                Step(salt: 0, accesses: [Access(datum: 2, direction: .commutative, k: 3)]),
                Step(salt: 0, accesses: [Access(datum: 2, direction: .commutative, k: -1)]),
            ])
        let o = interpret(p)
        #expect(o.waited == [7])
        #expect(o.results == [1 * 31 + 2, 5, 0, 0])
        #expect(o.finals == [7, 5, 5 + 4 + 3 - 1, nil])
    }
}
