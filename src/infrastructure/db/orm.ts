import { MikroORM } from '@mikro-orm/mariadb';
import { Migrator } from '@mikro-orm/migrations';
import { CampaignEntity, CampaignEventEntity, CouponEntity } from './entities.ts';
import { Migration20261125000000_initial } from './migrations/Migration20261125000000_initial.ts';
import { Migration20261201000000_nopad_collation } from './migrations/Migration20261201000000_nopad_collation.ts';
import { Migration20261201000100_deployment } from './migrations/Migration20261201000100_deployment.ts';
import { Migration20261215000000_campaign_operations } from './migrations/Migration20261215000000_campaign_operations.ts';
import { Migration20261220000000_coupon_lifecycle } from './migrations/Migration20261220000000_coupon_lifecycle.ts';

export type Database = MikroORM;

export interface DatabaseOptions {
  readonly url: string;
  readonly poolSize: number;
  /** Bounds connecting and every query, so an unreachable database fails a call instead of hanging it. */
  readonly timeoutMs: number;
  /** Told of every SQL statement sent (MikroORM's `onQuery` hook), for the query counter. */
  readonly onQuery?: () => void;
}

/**
 * Opens the pool, creates the database if it is missing and applies the committed migrations.
 * The mariadb driver also serves MySQL 8: the migrations are plain DDL both accept, and it reads
 * MariaDB's schema without the false diffs the mysql driver reports there.
 */
export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const orm = await MikroORM.init({
    clientUrl: options.url,
    entities: [CampaignEntity, CouponEntity, CampaignEventEntity],
    extensions: [Migrator],
    discovery: { warnWhenNoEntities: false },
    // Every instant is written from the application in UTC (no DB-side NOW() or defaults), so
    // the server's own time zone never shifts a campaign window.
    forceUtcTimezone: true,
    timezone: '+00:00',
    pool: { min: 0, max: options.poolSize },
    driverOptions: { connectTimeout: options.timeoutMs },
    migrations: {
      migrationsList: [
        Migration20261125000000_initial,
        Migration20261201000000_nopad_collation,
        Migration20261201000100_deployment,
        Migration20261215000000_campaign_operations,
        Migration20261220000000_coupon_lifecycle,
      ],
      snapshot: false,
      snapshotOnMigrate: false,
      dropTables: false,
      silent: true,
    },
    debug: false,
    onQuery: (sql) => {
      options.onQuery?.();
      return sql;
    },
  });
  await orm.schema.ensureDatabase();
  await orm.migrator.up();
  return orm;
}
