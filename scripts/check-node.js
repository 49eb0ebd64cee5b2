// Runs before `npm start`, `npm test` and `npm run bench`, on whichever Node npm found first on
// PATH: the Node 24 that `npm ci` installs into node_modules/.bin (optionalDependencies, one
// package per platform), else the machine's own. Plain JavaScript, so that even a Node too old to
// strip TypeScript types says in one line what it needs instead of printing a stack trace.
const NEEDED = [22, 18]; // MikroORM 7 needs 22.17; type stripping without a flag came in 22.18.

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < NEEDED[0] || (major === NEEDED[0] && minor < NEEDED[1])) {
  console.error(
    `coupon-service needs Node.js ${NEEDED.join('.')} or later (24 LTS recommended), found ${process.version} at ${process.execPath}: ` +
      `npm ci brings Node 24 on linux-x64, linux-arm64, darwin-x64 and win-x64; elsewhere install Node 24 and run again`,
  );
  process.exit(1);
}
