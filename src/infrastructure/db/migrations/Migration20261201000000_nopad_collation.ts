import { Migration } from '@mikro-orm/migrations';

/**
 * Byte-exact text comparison for every column a client names: MariaDB's `utf8mb4_bin` is a PAD
 * SPACE collation, so "alice" and "alice " were one user to the unique key while Redis (which
 * compares bytes) saw two; each padded id then took a slot that no row stood behind. A NO PAD
 * binary collation makes MySQL compare exactly as Redis does. Its name differs per server:
 * MariaDB 10.2+ `utf8mb4_nopad_bin`, MySQL 8.0.17+ `utf8mb4_0900_bin`.
 */
export class Migration20261201000000_nopad_collation extends Migration {
  override async up(): Promise<void> {
    const collation = await this.exactCollation();
    this.addSql(
      `alter table \`campaign\` modify \`name\` varchar(200) character set utf8mb4 collate ${collation} not null`,
    );
    this.addSql(`alter table \`coupon\`
      modify \`user_id\` varchar(128) character set utf8mb4 collate ${collation} not null,
      modify \`code\` varchar(10) character set utf8mb4 collate ${collation} not null`);
  }

  override down(): void {
    this.addSql('alter table `campaign` modify `name` varchar(200) collate utf8mb4_bin not null');
    this.addSql(`alter table \`coupon\`
      modify \`user_id\` varchar(128) collate utf8mb4_bin not null,
      modify \`code\` varchar(10) collate utf8mb4_bin not null`);
  }

  private async exactCollation(): Promise<string> {
    const rows = (await this.execute(
      `select collation_name as name from information_schema.collations
       where collation_name in ('utf8mb4_nopad_bin', 'utf8mb4_0900_bin')`,
    )) as { name: string }[];
    const names = new Set(rows.map((row) => row.name));
    for (const name of ['utf8mb4_nopad_bin', 'utf8mb4_0900_bin']) if (names.has(name)) return name;
    throw new Error(
      'the database offers no NO PAD binary utf8mb4 collation (utf8mb4_nopad_bin or utf8mb4_0900_bin): use MySQL 8.0.17+ or MariaDB 10.6+',
    );
  }
}
