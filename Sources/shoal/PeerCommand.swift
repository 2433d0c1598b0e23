import ArgumentParser
import Foundation
import ShoalTransport

/// `shoal peer ...`: running a peer of a cluster, and the keys peers and clients prove
/// themselves with.
struct PeerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peer",
        abstract: "Peers of a cluster and their CurveZMQ keys.",
        subcommands: [Keygen.self, Start.self])
}

extension PeerCommand {
    /// `shoal peer keygen --out DIR --name NAME`: a fresh CurveZMQ key pair.
    struct Keygen: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "keygen",
            abstract: "Make a CurveZMQ key pair: NAME.key (secret, mode 0600) and NAME.pub.",
            discussion: """
                Each file is one line of Z85 (40 characters). Give the .key file to the peer or \
                client it belongs to (--key), and put the .pub file in the allow-lists of the \
                peers it may talk to (--peers-allow for peers, --clients-allow for clients). \
                Existing files are never overwritten.
                """)

        @Option(help: "The folder to write the two files in (made if missing).")
        var out: String

        @Option(help: "The files' name: NAME.key and NAME.pub.")
        var name: String

        func validate() throws {
            guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else {
                throw ValidationError("--name must be a file name, without '/': got '\(name)'")
            }
        }

        func run() throws {
            try exitOnError {
                let pair = try CurveKeyPair.generate()
                let paths = try pair.write(directory: out, name: name)
                print("wrote \(paths.secret) (secret, mode 0600) and \(paths.public)")
                print("public key: \(pair.publicKey.z85)")
            }
        }
    }
}
