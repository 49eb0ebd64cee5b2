import { Migration } from '@mikro-orm/migrations';

/**
 * The coupon lifecycle (GetCoupon, ListUserCoupons, RedeemCoupon, CancelRedemption, validity).
 * Plain DDL that MySQL 8 and MariaDB 10.6+ both accept.
 *
 * `campaign.coupon_valid_for_ms` is fixed at creation; `coupon.valid_until` is written with the
 * row (issued_at plus it), so RedeemCoupon judges expiry in a single-row conditional UPDATE of
 * the coupon alone, never reading (and locking) the campaign row the issue path writes.
 * `order_id` is compared byte for byte, like every id a client names (the NO PAD collation of the
 * server, as in Migration20261201000000_nopad_collation).
 *
 * `coupon_user_order_index` (user_id, id) makes a user's wallet, newest first, one range of an
 * index whatever the table's size; GetCoupon and the redemptions find a code by
 * `coupon_code_unique`, and a user's coupon of one campaign by `coupon_campaign_user_unique`.
 */
export class Migration20261220000000_coupon_lifecycle extends Migration {
  override async up(): Promise<void> {
    const collation = await this.exactCollation();
    this.addSql('alter table `campaign` add `coupon_valid_for_ms` bigint null');
    this.addSql(`alter table \`coupon\`
      add \`valid_until\` datetime(3) null,
      add \`redeemed_at\` datetime(3) null,
      add \`order_id\` varchar(128) character set utf8mb4 collate ${collation} null,
      add index \`coupon_user_order_index\` (\`user_id\`, \`id\`)`);
  }

  override down(): void {
    this.addSql(`alter table \`coupon\`
      drop index \`coupon_user_order_index\`,
      drop \`order_id\`,
      drop \`redeemed_at\`,
      drop \`valid_until\``);
    this.addSql('alter table `campaign` drop `coupon_valid_for_ms`');
  }

  private async exactCollation(): Promise<string> {
    const rows = (await this.execute(
      `select collation_name as name from information_schema.collations
       where collation_name in ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')`,
    )) as { name: string }[];
    const names = new Set(rows.map((row) => row.name));
    for (const name of ['utf8mb4_nopad_bin', 'utf8mb4_0900_bin']) if (names.has(name)) return name;
    throw new Error(
      'the database offers no NO PAD binary utf8mb4 collation: use MySQL 8.0.17+ or MariaDB 10.6+',
    );
  }
}
