import Foundation

/// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with
/// openssl in a directory of their own.
public struct TestCertificates: Sendable {
  public let directory: String
  /// The server certificate's subject alternative names (openssl's syntax).
  public var serverNames = "IP:127.0.0.1,DNS:localhost"
  public var caFile: String { self.directory + "/ca.pem" }
  public var serverCertFile: String { self.directory + "/server.pem" }
  public var serverKeyFile: String { self.directory + "/server-key.pem" }
  public var clientCertFile: String { self.directory + "/client.pem" }
  public var clientKeyFile: String { self.directory + "/client-key.pem" }

  /// Makes a fresh CA and certificates signed by it; the server certificate's subject
  /// alternative names are `serverNames` (openssl's syntax).
  public static func make(in directory: String, serverNames: String = "IP:127.0.0.1,DNS:localhost") throws -> TestCertificates {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let certs = TestCertificates(directory: directory, serverNames: serverNames)
    try openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=etcsync test CA",
                 "-keyout", directory + "/ca-key.pem", "-out", certs.caFile], in: directory)
    try certs.issue(name: "server", subject: "/CN=localhost",
                    extensions: "subjectAltName=\(serverNames)\nextendedKeyUsage=serverAuth,clientAuth")
    try certs.issue(name: "client", subject: "/CN=root", extensions: "extendedKeyUsage=clientAuth")
    return certs
  }

  private func issue(name: String, subject: String, extensions: String) throws {
    let dir = self.directory
    try extensions.write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
    try openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                 "-keyout", "\(dir)/\(name)-key.pem", "-out", "\(dir)/\(name).csr"], in: dir)
    try openssl(["x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", self.caFile, "-CAkey", "\(dir)/ca-key.pem",
                 "-CAcreateserial", "-days", "2", "-extfile", "\(dir)/\(name).ext", "-out", "\(dir)/\(name).pem"], in: dir)
  }

  private static func openssl(_ arguments: [String], in directory: String) throws {
    let errors = "\(directory)/openssl-\(UInt64.random(in: 0 ... .max)).err"
    defer { unlink(errors) }
    let process = try ChildProcess(["/usr/bin/openssl"] + arguments, currentDirectory: directory, error: errors)
    guard process.waitUntilExit(within: .seconds(120)) else {
      process.signal(SIGKILL)
      throw TestSupportError("openssl \(arguments.first ?? "") still ran after 120 s")
    }
    guard process.terminationStatus == 0 else {
      let output = (try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""
      throw TestSupportError("openssl \(arguments.first ?? "") failed: \(output)")
    }
  }

  private func openssl(_ arguments: [String], in directory: String) throws {
    try Self.openssl(arguments, in: directory)
  }
}
