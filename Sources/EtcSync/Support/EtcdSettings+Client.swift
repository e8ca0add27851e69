import EtcdClient

extension EtcdSettings {
  /// The client configuration these settings describe; reads the password file.
  public func clientConfiguration() throws(ConfigurationError) -> EtcdConfiguration {
    var configuration: EtcdConfiguration
    do {
      configuration = try EtcdConfiguration(endpoints: self.endpoints)
    } catch {
      throw ConfigurationError(.invalidValue, field: "etcd.endpoints", message: error.message)
    }
    configuration.dialTimeout = self.dialTimeout
    configuration.requestTimeout = self.requestTimeout
    configuration.keepaliveTime = self.keepaliveTime
    configuration.keepaliveTimeout = self.keepaliveTimeout
    if let tls = self.tls {
      configuration.tls = EtcdConfiguration.TLS(caFile: tls.ca, certFile: tls.cert, keyFile: tls.key, serverName: tls.serverName)
    }
    if let auth = self.auth {
      configuration.credentials = .init(username: auth.user, password: try auth.resolvePassword())
    }
    return configuration
  }
}
