import EtcdClient

/// A user a test creates before turning authentication on, with a role of the same name.
public struct TestUser: Sendable {
  public var name: String
  public var password: String
  /// What the user's role may do, on which ranges.
  public var grants: [(permission: Permission, range: KeyRange)]

  public init(_ name: String, password: String, grants: [(permission: Permission, range: KeyRange)]) {
    self.name = name
    self.password = password
    self.grants = grants
  }
}

extension EtcdClient {
  /// Turns etcd's authentication on: a `root` user with the `root` role and `rootPassword`,
  /// and each of `users` with a role of its own name granted its `grants`. Call it on a
  /// client without credentials, before auth is on.
  public func enableAuthentication(rootPassword: String, users: [TestUser] = []) async throws(EtcdError) {
    try await self.roleAdd("root")
    try await self.userAdd("root", password: rootPassword)
    try await self.userGrantRole("root", role: "root")
    for user in users {
      try await self.userAdd(user.name, password: user.password)
      try await self.roleAdd(user.name)
      for grant in user.grants { try await self.roleGrantPermission(user.name, grant.permission, on: grant.range) }
      try await self.userGrantRole(user.name, role: user.name)
    }
    try await self.authEnable()
  }
}
