import { defineEntity, p } from '@mikro-orm/core';

/**
 * Text a client names (campaign name, user id, code) is compared byte for byte, as Redis does: a
 * NO PAD binary collation the migration picks per server (none is common to MySQL and MariaDB).
 *
 * The source of truth. `issued_count` is raised in the same transaction as each coupon insert,
 * guarded so it can never pass `amount`: the database enforces the cap on its own, whatever the
 * Redis gate believes.
 */
export const CampaignEntity = defineEntity({
  name: 'Campaign',
  tableName: 'campaign',
  properties: {
    id: p.string().length(36).primary(),
    name: p.string().length(200).unique('campaign_name_unique'),
    amount: p.integer(),
    issuedCount: p.integer().default(0),
    issuedAt: p.datetime(3),
    expiresAt: p.datetime(3).index('campaign_expires_at_index'),
    createdAt: p.datetime(3),
    couponValidForMs: p.bigint('number').nullable(),
  },
});

/**
 * One row per issued coupon. UNIQUE(campaign_id, user_id) makes a second coupon for one user
 * impossible; the code is unique across every campaign and compared byte for byte.
 */
export const CouponEntity = defineEntity({
  name: 'Coupon',
  tableName: 'coupon',
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    campaign: () =>
      p.manyToOne(CampaignEntity).fieldName('campaign_id').foreignKeyName('coupon_campaign_fk').index(false),
    userId: p.string().length(128),
    code: p.string().length(10).unique('coupon_code_unique'),
    issuedAt: p.datetime(3),
    validUntil: p.datetime(3).nullable(),
    redeemedAt: p.datetime(3).nullable(),
    orderId: p.string().length(128).nullable(),
  },
  uniques: [{ name: 'coupon_campaign_user_unique', properties: ['campaign', 'userId'] }],
  indexes: [
    // A campaign's coupons in issue order, one page at a time (ListCoupons' keyset).
    { name: 'coupon_campaign_order_index', properties: ['campaign', 'id'] },
    // A user's coupons newest first (ListUserCoupons' keyset).
    { name: 'coupon_user_order_index', properties: ['userId', 'id'] },
  ],
});

/**
 * The audit trail: one row per admin change of a campaign (created, closed, amount changed),
 * written in the same transaction as the change. `actor` is a fingerprint of the credential.
 */
export const CampaignEventEntity = defineEntity({
  name: 'CampaignEvent',
  tableName: 'campaign_event',
  properties: {
    id: p.bigint('number').primary().autoincrement(),
    campaign: () =>
      p
        .manyToOne(CampaignEntity)
        .fieldName('campaign_id')
        .foreignKeyName('campaign_event_campaign_fk')
        .index(false),
    kind: p.string().length(32),
    detail: p.string().length(500),
    actor: p.string().length(64),
    at: p.datetime(3),
  },
  indexes: [{ name: 'campaign_event_campaign_order_index', properties: ['campaign', 'id'] }],
});
