import ShoalCore

/// The bytes of the values one peer holds, by their digest (`PayloadDigest`): what a shell keeps
/// beside its machine's value references (metadata in machines, bytes in shells).
///
/// Keyed by digest rather than by version: values are immutable, so two versions with the same
/// bytes (an `inout` task that changed nothing, an ignored failure's pass-through) share one copy,
/// and the shell needs no mirror of the machine's version table. What is in memory is lost with
/// the process; what the peer persisted (the initial data of the workflow records it keeps,
/// persistent objects' bytes) is in its shard's `payloads` table and comes back after a restart
/// (`init(shard:)`).
///
/// Layout of the `payloads` table: `V` + workflow (8 bytes, big-endian) + digest (8 bytes,
/// big-endian) holds a value's bytes for that workflow (two workflows that share bytes each have
/// an entry, so releasing one keeps the other's); `O` + digest holds an object's bytes.
public struct PayloadStore {
    public private(set) var memory: [UInt64: [UInt8]] = [:]
    /// The workflows whose values have each digest's bytes (equal bytes are kept once, so two
    /// workflows may share them): the bytes go when the last of them is released.
    private var users: [UInt64: Set<WorkflowID>] = [:]
    /// The digests persisted for each workflow (their shard entries go with the workflow).
    private var persisted: [WorkflowID: Set<UInt64>] = [:]
    /// Bytes held in memory (what `PeerShell.maxHeldBytes` bounds).
    public private(set) var heldBytes = 0
    /// Persistent objects' bytes, by content digest: in memory once received, in the shard once
    /// the placement machine persisted the object.
    public private(set) var objects: [UInt64: [UInt8]] = [:]
    private let shard: any KeyValueShard

    static let valueTag: UInt8 = 0x56  // "V"
    static let objectTag: UInt8 = 0x4F  // "O"

    /// The store of a peer whose shard is `shard`: what the shard persisted is held again.
    public init(shard: any KeyValueShard) throws {
        self.shard = shard
        for entry in try shard.scan(.payloads, prefix: [], after: nil, limit: Int.max) {
            let key = entry.key
            if key.count == 17, key[0] == Self.valueTag {
                let wf = WorkflowID(raw: Self.word(key, at: 1)), digest = Self.word(key, at: 9)
                if memory.updateValue(entry.value, forKey: digest) == nil { heldBytes += entry.value.count }
                users[digest, default: []].insert(wf)
                persisted[wf, default: []].insert(digest)
            } else if key.count == 9, key[0] == Self.objectTag {
                objects[Self.word(key, at: 1)] = entry.value
            }
        }
    }

    public mutating func keep(_ bytes: [UInt8], as value: DataValue, for workflow: WorkflowID) {
        if let old = memory.updateValue(bytes, forKey: value.content) { heldBytes -= old.count }
        heldBytes += bytes.count
        users[value.content, default: []].insert(workflow)
    }

    public func bytes(of value: DataValue) -> [UInt8]? { memory[value.content] }

    /// How many more bytes keeping the bytes of `values` would hold (bytes already held are shared).
    public func bytesToKeep(_ values: [DataValue]) -> Int {
        var seen = Set<UInt64>()
        var more = 0
        for v in values where memory[v.content] == nil && seen.insert(v.content).inserted { more += Int(clamping: v.bytes) }
        return more
    }

    /// Persists the bytes of `values` that are held (a record's initial data) for `workflow`.
    public mutating func persist(_ values: [DataValue], for workflow: WorkflowID) throws {
        var batch = WriteBatch()
        for v in values {
            guard let b = memory[v.content], persisted[workflow, default: []].insert(v.content).inserted else { continue }
            batch.put(Self.valueKey(workflow, v.content), b, in: .payloads)
        }
        if !batch.operations.isEmpty { try shard.apply(batch) }
    }

    /// Keeps the bytes of a persistent object (received, or put by a client) in memory.
    public mutating func keepObject(_ bytes: [UInt8], content: UInt64) { objects[content] = bytes }

    /// Persists the bytes of the object whose content is `content`, if held.
    public mutating func persistObject(_ content: UInt64) throws {
        guard let bytes = objects[content] else { return }
        try shard.put(Self.objectKey(content), bytes, in: .payloads)
    }

    /// Workflow `workflow` ended and this peer's machine dropped its versions: the bytes no other
    /// workflow uses go too, from memory and from the shard.
    public mutating func release(_ workflow: WorkflowID) throws {
        for (digest, var workflows) in users where workflows.contains(workflow) {
            workflows.remove(workflow)
            if workflows.isEmpty {
                users[digest] = nil
                if let old = memory.removeValue(forKey: digest) { heldBytes -= old.count }
            } else {
                users[digest] = workflows
            }
        }
        guard let digests = persisted.removeValue(forKey: workflow) else { return }
        var batch = WriteBatch()
        for d in digests.sorted() { batch.delete(Self.valueKey(workflow, d), in: .payloads) }
        try shard.apply(batch)
    }

    static func valueKey(_ workflow: WorkflowID, _ digest: UInt64) -> [UInt8] {
        var key: [UInt8] = [valueTag]
        append(workflow.raw, to: &key)
        append(digest, to: &key)
        return key
    }

    static func objectKey(_ digest: UInt64) -> [UInt8] {
        var key: [UInt8] = [objectTag]
        append(digest, to: &key)
        return key
    }

    private static func append(_ word: UInt64, to key: inout [UInt8]) {
        for shift in stride(from: 56, through: 0, by: -8) { key.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }

    private static func word(_ key: [UInt8], at start: Int) -> UInt64 {
        key[start..<start + 8].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
