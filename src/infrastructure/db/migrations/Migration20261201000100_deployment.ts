import { Migration } from '@mikro-orm/migrations';

/** One row naming this deployment's database, so two deployments sharing a Redis keyspace can tell. */
export class Migration20261201000100_deployment extends Migration {
  override up(): void {
    this.addSql(`create table \`deployment\` (
      \`singleton\` tinyint not null,
      \`id\` varchar(36) not null,
      \`created_at\` datetime(3) not null,
      primary key (\`singleton\`)
    ) default character set utf8mb4 engine = InnoDB`);
  }

  override down(): void {
    this.addSql('drop table if exists `deployment`');
  }
}
