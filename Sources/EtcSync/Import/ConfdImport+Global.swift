import Foundation

// confd.toml: the global settings.
extension ConfdConverter {
  struct Global {
    var top: [(String, YAMLText.Node)] = []
    /// confd's global `prefix`, which replaces every resource's own.
    var prefix: String? = nil
    var prefixLine: Int? = nil
    var syncOnly = false
  }

  mutating func globalSettings() throws(ConfdImport.Failure) -> Global {
    let file = self.path("confd.toml")
    var global = Global()
    guard case .success = ConfigFiles.kind(file) else {
      self.warn(
        file, nil,
        "not found: confd took its settings from flags; etcd.endpoints is left at etcsync's default (http://127.0.0.1:2379), see docs/coming-from-confd.md for the flags")
      return global
    }
    let table = try self.read(file)
    func string(_ key: String) throws(ConfdImport.Failure) -> String? {
      try Self.string(table, key, file: file)
    }
    var etcd: [(String, YAMLText.Node)] = []
    var tls: [(String, YAMLText.Node)] = []
    let scheme = try string("scheme")
    for key in table.keys {
      let line = table.lines[key]
      switch key {
      case "backend":
        let backend = try string(key) ?? ""
        if backend == "etcd" {
          self.warn(file, line, "backend \"etcd\" is confd's etcd v2 client; etcsync reads etcd v3 only, and keys written with the v2 API are not visible to it")
        } else if backend != "etcdv3" {
          self.warn(file, line, "backend \"\(backend)\" has no equivalent: etcsync reads etcd v3 only; the endpoints below are confd's nodes for \(backend)")
        }
      case "nodes":
        guard case .array(let items)? = table[key] else { throw Self.typeError(file, line, key, "a list of strings") }
        var endpoints: [String] = []
        for item in items {
          guard case .string(let node) = item else { throw Self.typeError(file, line, key, "a list of strings") }
          endpoints.append(Self.endpoint(node, scheme: scheme, tls: table["client_cert"] != nil || table["client_cakeys"] != nil))
        }
        etcd.append(("endpoints", .list(endpoints)))
      case "scheme":
        break
      case "client_cakeys", "client_cert", "client_key":
        guard let path = try string(key), !path.isEmpty else { continue }
        let name = ["client_cakeys": "ca", "client_cert": "cert", "client_key": "key"][key]!
        if !path.hasPrefix("/") {
          self.warn(file, line, "\(key) \"\(path)\" is relative to confd's working directory; etcsync takes etcd.tls.\(name) relative to the configuration file's directory")
        }
        tls.append((name, .scalar(path)))
      case "client_insecure":
        if case .bool(true)? = table[key] {
          self.warn(file, line, "client_insecure has no equivalent: etcsync always verifies the members' certificates (set etcd.tls.ca to their CA, or etcd.tls.serverName)")
        }
      case "username":
        break
      case "password":
        self.warn(
          file, line,
          "password is not copied: etcsync reads the password from a file only; write it to /etc/etcsync/etcd-password (mode 0600) or point ETCSYNC_PASSWORD_FILE or --password-file at the file that holds it")
      case "basic_auth":
        break
      case "prefix":
        let prefix = try string(key) ?? ""
        if !prefix.isEmpty {
          global.prefix = prefix
          global.prefixLine = line
        }
      case "confdir":
        if let dir = try string(key), ConfigFiles.resolve(dir, against: self.directory) != self.directory {
          self.warn(file, line, "confdir is \"\(dir)\"; the files converted are those of \(self.directory)")
        }
      case "interval":
        self.warn(file, line, "interval has no equivalent: etcsync does not poll, `etcsync run` watches etcd and renders on every change (use wait: {min, max} to coalesce changes)")
      case "watch":
        self.warn(file, line, "watch needs no setting: `etcsync run` always watches")
      case "onetime":
        self.warn(file, line, "onetime has no setting: run `etcsync sync` for one pass")
      case "log-level":
        let level = (try string(key) ?? "").lowercased()
        let mapped = ["debug": "debug", "info": "info", "warn": "warning", "warning": "warning", "error": "error", "fatal": "critical", "panic": "critical"][level]
        if let mapped {
          global.top.append(("log", .map([("level", .scalar(mapped))])))
        } else {
          self.warn(file, line, "log-level \"\(level)\" is not a confd level; left out")
        }
      case "noop":
        self.warn(file, line, "noop has no setting: use `etcsync diff` or `etcsync sync --dry-run`")
      case "sync-only":
        if case .bool(true)? = table[key] {
          global.syncOnly = true
          self.warn(file, line, "sync-only has no equivalent: check and reload commands are left out of every mapping, as confd skipped them")
        }
      case "keep-stage-file", "keep_stage_file":
        self.warn(file, line, "\(key) has no equivalent: etcsync removes a staged file that it does not rename into place")
      case "srv_domain", "srv_record":
        self.warn(file, line, "\(key) has no equivalent: list the members in etcd.endpoints")
      case "secret_keyring":
        self.warn(file, line, "secret_keyring has no equivalent: cget, cgets, cgetv and cgetvs are not implemented")
      case "auth_token", "auth_type", "app_id", "user_id", "role_id", "secret_id", "table", "separator", "file", "filter", "path":
        self.warn(file, line, "\(key) is a setting of another confd backend; it has no equivalent")
      default:
        self.warn(file, line, "\(key) is not a confd setting etcsync knows; left out")
      }
    }
    if let user = try string("username"), !user.isEmpty {
      etcd.append(("auth", .map([("user", .scalar(user)), ("passwordFile", .scalar("/etc/etcsync/etcd-password"))])))
    } else if table["password"] != nil {
      self.warn(file, table.lines["password"], "password without username: etcsync's etcd.auth needs a user; left out")
    }
    if !tls.isEmpty { etcd.append(("tls", .map(tls))) }
    if let prefix = global.prefix, KeyJoin.root(prefix) != "/" {
      global.top.insert(("keyPrefix", .scalar(prefix)), at: 0)
    }
    if !etcd.isEmpty { global.top.append(("etcd", .map(etcd))) }
    return global
  }

  /// A node as an etcsync endpoint: confd's etcdv3 client takes `host:port` as plain HTTP
  /// unless TLS files are given.
  static func endpoint(_ node: String, scheme: String?, tls: Bool) -> String {
    if node.contains("://") { return node }
    let scheme = scheme.flatMap { $0.isEmpty ? nil : $0 } ?? (tls ? "https" : "http")
    return "\(scheme)://\(node)"
  }
}
