import Foundation
import ShoalTestSupport
import Testing

/// `shoal peer keygen` as a user runs it.
@Suite struct PeerKeygenTests {
    @Test func keygenWritesASecretOnlyItsOwnerReadsAndNeverOverwrites() throws {
        let dir = try ScratchDirectory("keygen")
        defer { dir.remove() }
        let keys = dir.appending("keys").path
        let r = try ChildProcess.shoal(["peer", "keygen", "--out", keys, "--name", "alpha"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let secret = keys + "/alpha.key"
        let pub = keys + "/alpha.pub"
        let mode = try FileManager.default.attributesOfItem(atPath: secret)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        let publicKey = try String(contentsOfFile: pub, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(publicKey.count == 40)
        #expect(r.stdout.contains("public key: \(publicKey)"))
        let secretKey = try String(contentsOfFile: secret, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secretKey.count == 40 && secretKey != publicKey)

        let again = try ChildProcess.shoal(["peer", "keygen", "--out", keys, "--name", "alpha"])
        #expect(again.status == 2)
        #expect(again.stderr.contains("\(secret): already exists; not overwritten"), "stderr: \(again.stderr)")
        #expect(try String(contentsOfFile: secret, encoding: .utf8).contains(secretKey))

        let bad = try ChildProcess.shoal(["peer", "keygen", "--out", keys, "--name", "a/b"])
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("--name must be a file name"))
    }
}
