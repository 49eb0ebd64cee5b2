import net from 'node:net';

/**
 * A TCP proxy the test owns, between the service and MySQL or Redis. `cut()` drops every
 * connection and resets new ones, as a dead or partitioned server would; `restore()` lets
 * connections through again; `holdReplies()` lets requests through but drops the answers.
 */
export class TcpProxy {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private isCut = false;
  private holdingReplies = false;

  private constructor(target: { host: string; port: number }) {
    this.server = net.createServer((client) => {
      if (this.isCut) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect(target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.once('close', () => this.sockets.delete(socket));
        socket.on('error', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      // By hand rather than piped, so the replies can be held back (see `holdReplies`).
      upstream.on('data', (chunk: Buffer) => {
        if (this.holdingReplies) return;
        if (!client.write(chunk)) {
          upstream.pause();
          client.once('drain', () => upstream.resume());
        }
      });
      upstream.once('end', () => client.end());
    });
  }

  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Rewrites a service URL to go through this proxy. */
  route(url: string): string {
    const routed = new URL(url);
    routed.hostname = '127.0.0.1';
    routed.port = String(this.port);
    return routed.toString();
  }

  cut(): void {
    this.isCut = true;
    for (const socket of this.sockets) socket.resetAndDestroy();
  }

  restore(): void {
    this.isCut = false;
  }

  /** Replies from the server are dropped until `releaseReplies`: requests arrive, answers never do. */
  holdReplies(): void {
    this.holdingReplies = true;
  }

  releaseReplies(): void {
    this.holdingReplies = false;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
