import { Migration } from '@mikro-orm/migrations';

/** Plain DDL that MySQL 8 and MariaDB 10.6+ both accept. */
export class Migration20261125000000_initial extends Migration {
  override up(): void {
    this.addSql(`create table \`campaign\` (
      \`id\` varchar(36) not null,
      \`name\` varchar(200) collate utf8mb4_bin not null,
      \`amount\` int not null,
      \`issued_count\` int not null default 0,
      \`issued_at\` datetime(3) not null,
      \`expires_at\` datetime(3) not null,
      \`created_at\` datetime(3) not null,
      primary key (\`id\`),
      unique key \`campaign_name_unique\` (\`name\`),
      key \`campaign_expires_at_index\` (\`expires_at\`)
    ) default character set utf8mb4 engine = InnoDB`);
    this.addSql(`create table \`coupon\` (
      \`id\` bigint unsigned not null auto_increment,
      \`campaign_id\` varchar(36) not null,
      \`user_id\` varchar(128) collate utf8mb4_bin not null,
      \`code\` varchar(10) collate utf8mb4_bin not null,
      \`issued_at\` datetime(3) not null,
      primary key (\`id\`),
      unique key \`coupon_code_unique\` (\`code\`),
      unique key \`coupon_campaign_user_unique\` (\`campaign_id\`, \`user_id\`),
      constraint \`coupon_campaign_fk\` foreign key (\`campaign_id\`) references \`campaign\` (\`id\`)
    ) default character set utf8mb4 engine = InnoDB`);
  }

  override down(): void {
    this.addSql('drop table if exists `coupon`');
    this.addSql('drop table if exists `campaign`');
  }
}
