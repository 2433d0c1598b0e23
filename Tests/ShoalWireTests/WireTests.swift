import Foundation
import ShoalCore
import Testing

@testable import ShoalWire

/// Random messages of every kind the machines send, drawn from a seed.
struct MessageMaker {
    var rng: SeededGenerator
    init(seed: UInt64) { rng = SeededGenerator(seed: seed) }

    mutating func u64() -> UInt64 { rng.next() }
    mutating func small(_ n: Int) -> Int { Int(rng.next() % UInt64(max(1, n))) }
    mutating func bool() -> Bool { rng.next() & 1 == 1 }
    mutating func peer() -> PeerID { PeerID(raw: u64()) }
    mutating func wf() -> WorkflowID { WorkflowID(raw: u64()) }
    mutating func taskRef() -> TaskRef { TaskRef(wf(), small(1 << 20)) }
    mutating func versionRef() -> VersionRef { VersionRef(wf(), small(1 << 20)) }
    mutating func text(_ n: Int) -> String {
        let alphabet = Array("abcdefghij KLM-é✓\n")
        return String((0..<small(n)).map { _ in alphabet[small(alphabet.count)] })
    }
    mutating func value() -> ObjectValue { ObjectValue(bytes: u64() >> small(64), content: u64(), checksum: u64()) }
    mutating func failure() -> TaskFailure {
        TaskFailure(message: text(40), exitStatus: bool() ? Int32(truncatingIfNeeded: u64()) : nil, stderrTail: text(30))
    }
    mutating func direction() -> Direction { Direction.allCases[small(Direction.allCases.count)] }
    mutating func body() -> TaskBody {
        switch small(3) {
        case 0: .modelled
        case 1: .registered(name: "t" + text(10), arguments: (0..<small(20)).map { _ in UInt8(truncatingIfNeeded: u64()) })
        default: .exec(command: "cat {in:a} > {out:b}" + text(10))
        }
    }
    mutating func accesses(data: Int) -> [WorkflowTaskSpec.Access] {
        (0..<small(5)).map { _ in .init(small(data), direction()) }
    }
    mutating func update() -> MemberUpdate {
        MemberUpdate(
            peer: peer(), status: [.alive, .suspect, .dead, .left][small(4)], incarnation: u64(),
            load: bool()
                ? PeerLoad() : PeerLoad(freeSlots: UInt32(small(64)), readyTasks: UInt32(small(1000)), storedBytes: u64(), catalogue: u64()),
            loadVersion: u64())
    }
    mutating func updates() -> [MemberUpdate] { (0..<small(6)).map { _ in update() } }
    mutating func membership() -> MembershipMessage {
        switch small(7) {
        case 0: .ping(sequence: u64(), updates: updates())
        case 1: .ack(sequence: u64(), updates: updates())
        case 2: .pingRequest(sequence: u64(), target: peer(), updates: updates())
        case 3: .join(updates: updates())
        case 4: .joinReply(members: updates())
        case 5: .sync(digest: (0..<small(8)).map { _ in u64() }, updates: updates())
        default: .syncReply(members: updates())
        }
    }
    mutating func stealable() -> StealableTask {
        var t = StealableTask(
            id: taskRef(), owner: peer(), catalogueKey: u64(),
            inputs: (0..<small(4)).map { _ in
                DataLocation(datum: versionRef(), bytes: u64(), holder: peer(), checksum: u64(), absent: bool())
            },
            outputs: (0..<small(4)).map { _ in versionRef() })
        t.attempt = UInt16(1 + small(20))
        if bool() { t.call = ExecutableCall(body: body(), accesses: accesses(data: 100), label: text(12)) }
        return t
    }
    mutating func steal() -> StealMessage {
        switch small(3) {
        case 0:
            .request(
                requestID: u64(), max: small(64), catalogue: (0..<small(5)).map { _ in u64() }.sorted(),
                holding: (0..<small(5)).map { _ in versionRef() })
        case 1: .reply(requestID: u64(), granted: (0..<1 + small(4)).map { _ in stealable() })
        default: .refused(requestID: u64())
        }
    }
    mutating func spec() -> WorkflowSpec {
        let data = 1 + small(8)
        let modelled = bool()
        let tasks = (0..<small(12)).map { _ -> WorkflowTaskSpec in
            // Distinct data per call: the plan refuses one datum accessed twice by one call.
            let datums = Array((0..<data).shuffled(using: &rng).prefix(1 + small(min(3, data))))
            let accesses = datums.map { WorkflowTaskSpec.Access($0, [.in, .out, .inout][small(3)]) }
            let policy = FailurePolicy(retries: UInt16(small(4)), action: FailureAction.allCases[small(3)])
            if modelled {
                return WorkflowTaskSpec(
                    catalogueKey: u64(), cost: .microseconds(Int64(small(1000))), accesses: accesses, outputBytes: u64() >> 40,
                    policy: policy, label: bool() ? text(8) : "", failingAttempts: UInt16(small(3)))
            }
            return WorkflowTaskSpec(body: body(), accesses: accesses, policy: policy, label: text(8), cost: .microseconds(Int64(small(99))))
        }
        return WorkflowSpec(name: "wf-" + text(8), dataCount: data, initialBytes: u64() >> 50, tasks: tasks)
    }
    mutating func entry() -> RecordEntry {
        let kind = RecordEntry.Kind(rawValue: UInt8(small(7)))!
        return RecordEntry(
            kind, task: UInt32(small(1000)), version: UInt32(small(1000)), holder: peer(), checksum: u64(), bytes: u64(),
            source: UInt32(small(9)), failure: kind == .attemptFailed ? failure() : nil)
    }
    mutating func work() -> WorkMessage {
        switch small(17) {
        case 0: return .fetch(version: versionRef(), requestID: u64())
        case 1: return .data(version: versionRef(), requestID: u64(), value: value())
        case 2: return .noData(version: versionRef(), requestID: u64())
        case 3: return .started(tasks: (0..<small(6)).map { _ in taskRef() })
        case 4:
            return .result(
                task: taskRef(),
                outputs: (0..<small(4)).map { _ in OutputRecord(version: versionRef(), bytes: u64(), checksum: u64()) },
                basis: u64())
        case 5: return .failure(task: taskRef(), attempt: UInt16(small(100)), failure: failure())
        case 6: return .resultAck(tasks: (0..<small(6)).map { _ in taskRef() })
        case 7: return .query(tasks: (0..<small(6)).map { _ in taskRef() })
        case 8: return .unknown(tasks: (0..<small(6)).map { _ in taskRef() })
        case 9: return .inputLost(task: taskRef(), version: versionRef(), holder: peer(), definite: bool())
        case 10:
            let s = spec()
            let plan = try! WorkflowPlan(s, open: bool())
            return .recordCreate(
                workflow: wf(), owner: peer(), backups: (0..<small(3)).map { _ in peer() }, plan: plan,
                initial: (0..<s.dataCount).map { _ in value() })
        case 11:
            let s = spec()
            let parts = RecordPart.split(
                plan: try! WorkflowPlan(s), backups: [peer()], initial: (0..<s.dataCount).map { _ in value() }, maxPart: 1 + small(4))
            return .recordPart(workflow: wf(), owner: peer(), part: parts[small(parts.count)])
        case 12: return .recordAppend(workflow: wf(), owner: peer(), first: small(1 << 30), entries: (0..<small(5)).map { _ in entry() })
        case 13: return .recordAck(workflow: wf(), count: small(1000) - 2)
        case 14: return .release(workflow: wf())
        case 15: return .ownerCheck(workflow: wf())
        default: return .notOwner(workflow: wf())
        }
    }
    mutating func object() -> StoredObject {
        StoredObject(key: u64(), version: ObjectVersion(stamp: u64() >> 1, writer: peer()), value: value())
    }
    mutating func placement() -> PlacementMessage {
        let v = ObjectVersion(stamp: u64() >> 1, writer: peer())
        switch small(7) {
        case 0: return .store(object())
        case 1: return .stored(key: u64(), version: v)
        case 2: return .offer(key: u64(), version: v)
        case 3: return .want(key: u64(), version: v)
        case 4: return .have(key: u64(), version: v)
        case 5: return .fetch(requestID: u64(), key: u64())
        default: return .fetched(requestID: u64(), key: u64(), object: bool() ? object() : nil)
        }
    }
    mutating func message() -> PeerMessage {
        switch small(4) {
        case 0: .membership(membership())
        case 1: .steal(steal())
        case 2: .work(work())
        default: .placement(placement())
        }
    }
}

/// Whether two peer messages say the same thing: by equality where the types have it, and for work
/// messages (a plan has no equality) by the spec the plan was built from and the other fields.
func same(_ a: PeerMessage, _ b: PeerMessage) -> Bool {
    switch (a, b) {
    case (.membership(let x), .membership(let y)): return x == y
    case (.steal(let x), .steal(let y)): return x == y
    case (.placement(let x), .placement(let y)): return x == y
    case (.work(.recordCreate(let w1, let o1, let b1, let p1, let i1)), .work(.recordCreate(let w2, let o2, let b2, let p2, let i2))):
        return w1 == w2 && o1 == o2 && b1 == b2 && p1.spec == p2.spec && p1.isOpen == p2.isOpen && i1 == i2
    case (.work(.recordPart(let w1, let o1, let p1)), .work(.recordPart(let w2, let o2, let p2))):
        return w1 == w2 && o1 == o2 && p1 == p2
    case (.work(let x), .work(let y)): return String(describing: x) == String(describing: y)
    default: return false
    }
}

@Suite struct WireTests {
    @Test(arguments: [1, 2, 3, 4] as [UInt64]) func everyMessageRoundTrips(seed: UInt64) throws {
        var maker = MessageMaker(seed: seed)
        for round in 0..<2_000 {
            let m = maker.message()
            let frames = Wire.encode(WireMessage(body: .peer(m, contacts: [])))
            #expect(frames.count == 1, "seed \(seed), round \(round)")
            let back = try Wire.decode(frames)
            guard case .peer(let decoded, let contacts) = back.body else {
                Issue.record("seed \(seed), round \(round): decoded as another kind")
                continue
            }
            #expect(contacts.isEmpty)
            #expect(same(m, decoded), "seed \(seed), round \(round): \(m) came back as \(decoded)")
        }
    }

    @Test func contactsTravelWithMembership() throws {
        var c = WireContact()
        c.peer = 7
        c.address = "tcp://127.0.0.1:7000"
        c.publicKey = Data(repeating: 9, count: 32)
        let m = PeerMessage.membership(.join(updates: []))
        let back = try Wire.decode(Wire.encode(WireMessage(body: .peer(m, contacts: [c]))))
        guard case .peer(_, let contacts) = back.body else { throw WireError.empty }
        #expect(contacts == [c])
    }

    @Test func payloadsTravelInChunksWithoutACopy() throws {
        let big = Data((0..<(10 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let small = Data("hello".utf8)
        let message = WireMessage(
            body: .peer(.work(.data(version: VersionRef(WorkflowID(raw: 1), 2), requestID: 3, value: PayloadDigestValue.of(big))), contacts: []),
            payloads: [WirePayload(big), WirePayload(Data()), WirePayload(small)])
        let frames = Wire.encode(message, chunkBytes: 4 << 20)
        #expect(frames.count == 1 + 3 + 0 + 1)
        #expect(frames[1...3].map(\.count) == [4 << 20, 4 << 20, 2 << 20])
        // The frames are slices of the payload's own buffer.
        let base = big.withUnsafeBytes { UInt(bitPattern: $0.baseAddress) }
        #expect(frames[2].withUnsafeBytes { UInt(bitPattern: $0.baseAddress) } == base + UInt(4 << 20))
        let back = try Wire.decode(frames)
        #expect(back.payloads.map(\.count) == [10 << 20, 0, 5])
        #expect(back.payloads[0].data == big && back.payloads[2].bytes == Array(small))
        #expect(back.payloads[0].chunks.count == 3)
    }

    @Test func aClientRequestAndReplyRoundTrip() throws {
        var r = ClientRequest()
        r.requestID = 42
        var s = Shoal_Wire_V1_SubmitFile()
        s.path = "wf.yaml"
        s.text = "name: x\n"
        s.files = ["words.txt"]
        s.follow = true
        r.submit = s
        let back = try Wire.decode(Wire.encode(WireMessage(body: .request(r), payloads: [WirePayload(Data("a b c".utf8))])))
        guard case .request(let got) = back.body else { throw WireError.empty }
        #expect(got == r && back.payloads.first?.bytes == Array("a b c".utf8))

        var reply = ClientReply()
        reply.requestID = 42
        var e = Shoal_Wire_V1_Error()
        e.code = .badInput
        e.message = "unknown datum"
        e.file = "wf.yaml"
        e.line = 3
        e.field = "in"
        reply.error = e
        guard case .reply(let gotReply) = try Wire.decode(Wire.encode(WireMessage(body: .reply(reply)))).body else {
            throw WireError.empty
        }
        #expect(gotReply == reply)
    }

    // MARK: Refusals

    @Test func anotherVersionIsRefusedByNumber() throws {
        var envelope = WireEnvelope()
        envelope.version = 2
        envelope.steal = WireMapping.steal(.refused(requestID: 1))
        #expect(throws: WireError.version(2)) { try Wire.decode([try envelope.serializedData()]) }
        envelope.version = 0  // a sender that set none
        #expect(throws: WireError.version(0)) { try Wire.decode([try envelope.serializedData()]) }
    }

    @Test func payloadFramesMustMatchTheHeader() throws {
        let m = WireMessage(body: .peer(.steal(.refused(requestID: 1)), contacts: []), payloads: [WirePayload(Data(count: 10))])
        let frames = Wire.encode(m, chunkBytes: 4)
        #expect(frames.count == 4)
        for bad in [Array(frames.dropLast()), frames + [Data([1])], [frames[0], frames[1], Data([1, 2]), frames[3]], [frames[0]]] {
            #expect {
                try Wire.decode(bad)
            } throws: { error in
                if case WireError.payloads = error { return true }
                return false
            }
        }
        var limits = WireLimits()
        limits.maxPayloadBytes = 9
        #expect(throws: WireError.self) { try Wire.decode(frames, limits: limits) }
        #expect(throws: WireError.empty) { try Wire.decode([]) }
    }

    @Test func unknownEnumValuesAndShapelessPlansAreInvalid() throws {
        var call = Shoal_Wire_V1_Call()
        var access = Shoal_Wire_V1_Access()
        access.direction = .UNRECOGNIZED(99)
        call.accesses = [access]
        call.body.exec = "true"
        var task = WireMapping.stealable(StealableTask(id: TaskRef(WorkflowID(raw: 1), 0), owner: PeerID(raw: 2), catalogueKey: 3))
        task.call = call
        var reply = Shoal_Wire_V1_StealReply()
        reply.granted = [task]
        var envelope = WireEnvelope()
        envelope.version = Wire.version
        envelope.steal.reply = reply
        #expect(throws: WireError.invalid("direction 99")) { try Wire.decode([try envelope.serializedData()]) }

        // A plan whose columns disagree, and one whose call names a datum out of range.
        let spec = WorkflowSpec(name: "w", dataCount: 1, tasks: [WorkflowTaskSpec(catalogueKey: 1, cost: .zero, accesses: [.init(0, .inout)], outputBytes: 1)])
        var create = WireMapping.work(
            .recordCreate(workflow: WorkflowID(raw: 1), owner: PeerID(raw: 1), backups: [], plan: try WorkflowPlan(spec), initial: [ObjectValue(bytes: 1, content: 1)]))
        create.recordCreate.spec.calls.costNanos.append(5)
        envelope.work = create
        #expect(throws: WireError.self) { try Wire.decode([try envelope.serializedData()]) }
        create.recordCreate.spec.calls.costNanos.removeLast()
        create.recordCreate.spec.calls.accessDatum[0] = 7
        envelope.work = create
        #expect {
            try Wire.decode([try envelope.serializedData()])
        } throws: { error in
            if case WireError.invalid(let why) = error { return why.contains("plan") }
            return false
        }
        // Access starts that end where they should but pass the accesses on the way (found by
        // `garbageNeverTraps`: it trapped before the bound was checked).
        let two = WorkflowSpec(
            name: "w", dataCount: 1,
            tasks: [0, 1].map { _ in WorkflowTaskSpec(catalogueKey: 1, cost: .zero, accesses: [.init(0, .inout)], outputBytes: 1) })
        var twoCalls = WireMapping.work(
            .recordCreate(workflow: WorkflowID(raw: 1), owner: PeerID(raw: 1), backups: [], plan: try WorkflowPlan(two), initial: [ObjectValue(bytes: 1, content: 1)]))
        twoCalls.recordCreate.spec.calls.accessStart = [0, 9, 2]
        envelope.work = twoCalls
        #expect(throws: WireError.self) { try Wire.decode([try envelope.serializedData()]) }
        envelope.body = nil
        #expect(throws: WireError.invalid("the envelope says nothing (no body)")) { try Wire.decode([try envelope.serializedData()]) }
    }

    @Test func deepNestingIsRefusedNotFollowed() throws {
        // 100,000 nested start-group tags of an unknown field: a decoder without a depth limit
        // would recurse until the stack ran out.
        var groups = Data(repeating: 0x7B, count: 100_000)  // field 15, wire type 3 (start group)
        groups.insert(contentsOf: [0x08, 0x01], at: 0)  // version 1
        #expect(throws: WireError.self) { try Wire.decode([groups]) }
        // Well-formed nested groups of an unknown field (14) in a real message: skipped under the
        // limit, refused over it (`Wire.depthLimit`, not the library's default of 100).
        func nestedGroups(_ depth: Int) -> Data {
            var d = Wire.encode(WireMessage(body: .peer(.steal(.refused(requestID: 1)), contacts: [])))[0]
            d.append(Data(repeating: 0x73, count: depth))
            d.append(Data(repeating: 0x74, count: depth))
            return d
        }
        #expect(throws: Never.self) { try Wire.decode([nestedGroups(Wire.depthLimit - 2)]) }
        #expect(throws: WireError.self) { try Wire.decode([nestedGroups(Wire.depthLimit + 1)]) }

        // The schema has no recursive message: the deepest real message (a registered body in a
        // record create's calls, 7 deep) decodes under the limit.
        let spec = WorkflowSpec(
            name: "w", dataCount: 1,
            tasks: [WorkflowTaskSpec(body: .registered(name: "t", arguments: [1]), accesses: [.init(0, .inout)])])
        let create = PeerMessage.work(
            .recordCreate(
                workflow: WorkflowID(raw: 1), owner: PeerID(raw: 1), backups: [], plan: try WorkflowPlan(spec),
                initial: [ObjectValue(bytes: 1, content: 1)]))
        #expect(same(try decodedPeerMessage(Wire.encode(WireMessage(body: .peer(create, contacts: [])))), create))
    }

    /// Random bytes, truncations and flipped bytes of real messages: the decoder answers each with
    /// a message or a `WireError`, and never traps (a trap would end the test process).
    @Test(arguments: [11, 12, 13] as [UInt64]) func garbageNeverTraps(seed: UInt64) throws {
        var maker = MessageMaker(seed: seed)
        var refused = 0, decoded = 0
        func attempt(_ frames: [Data]) {
            do {
                _ = try Wire.decode(frames)
                decoded += 1
            } catch {
                refused += 1
            }
        }
        for _ in 0..<400 {
            let m = maker.message()
            var frames = Wire.encode(WireMessage(body: .peer(m, contacts: []), payloads: maker.bool() ? [WirePayload(Data(count: 9))] : []), chunkBytes: 4)
            let header = frames[0]
            // Every truncation of the header.
            for cut in 0..<header.count { attempt([header.prefix(cut)] + frames.dropFirst()) }
            // Flipped bytes.
            for _ in 0..<8 where !header.isEmpty {
                var h = header
                let k = maker.small(h.count)
                h[h.startIndex + k] ^= UInt8(truncatingIfNeeded: 1 + maker.small(255))
                frames[0] = h
                attempt(frames)
            }
            // Random bytes, with the version's field in front half of the time.
            var junk = Data((0..<maker.small(200)).map { _ in UInt8(truncatingIfNeeded: maker.u64()) })
            if maker.bool() { junk.insert(contentsOf: [0x08, 0x01], at: 0) }
            attempt([junk])
            attempt([junk, junk])
        }
        // Most garbage is refused; some truncations are still valid messages (a prefix that ends
        // at a field boundary).
        #expect(refused > decoded, "seed \(seed): \(refused) refused, \(decoded) decoded")
        #expect(refused + decoded > 10_000)
    }
}

/// The value reference of bytes (`PayloadDigest.value(of:)` over `Data`).
enum PayloadDigestValue {
    static func of(_ d: Data) -> ObjectValue { PayloadDigest.value(of: Array(d)) }
}

func decodedPeerMessage(_ frames: [Data]) throws -> PeerMessage {
    guard case .peer(let m, _) = try Wire.decode(frames).body else { throw WireError.empty }
    return m
}
