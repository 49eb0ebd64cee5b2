import { Migration } from '@mikro-orm/migrations';

/**
 * Campaign operations (ListCoupons, ListCampaignEvents). Plain DDL that MySQL 8 and MariaDB 10.6+
 * both accept.
 *
 * `coupon_campaign_order_index` lets ListCoupons read one page of a campaign's coupons in issue
 * order as a range of one index (`campaign_id = ? and id > ? order by id limit n`), whatever the
 * size of the campaign; without it the only index by campaign is (campaign_id, user_id), whose
 * order is not the issue order. InnoDB adds a secondary index in place, without blocking writes.
 *
 * `campaign_event` is the audit trail: one row per admin change, written in the transaction of the
 * change itself. `actor` is a fingerprint of the admin credential, never the credential.
 */
export class Migration20261215000000_campaign_operations extends Migration {
  override up(): void {
    this.addSql('alter table `coupon` add index `coupon_campaign_order_index` (`campaign_id`, `id`)');
    this.addSql(`create table \`campaign_event\` (
      \`id\` bigint unsigned not null auto_increment,
      \`campaign_id\` varchar(36) not null,
      \`kind\` varchar(32) not null,
      \`detail\` varchar(500) not null,
      \`actor\` varchar(64) not null,
      \`at\` datetime(3) not null,
      primary key (\`id\`),
      key \`campaign_event_campaign_order_index\` (\`campaign_id\`, \`id\`),
      constraint \`campaign_event_campaign_fk\` foreign key (\`campaign_id\`) references \`campaign\` (\`id\`)
    ) default character set utf8mb4 engine = InnoDB`);
  }

  override down(): void {
    this.addSql('drop table if exists `campaign_event`');
    this.addSql('alter table `coupon` drop index `coupon_campaign_order_index`');
  }
}
