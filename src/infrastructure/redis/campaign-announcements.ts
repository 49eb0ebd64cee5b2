import type { CampaignDirectory } from '../../application/campaign-directory.ts';
import type { CampaignAnnouncer, LiveCampaign } from '../../application/ports.ts';
import { couldBeCampaignId } from '../../domain/campaign.ts';
import type { RedisClient } from './client.ts';

/**
 * Announces each campaign created on Redis pub/sub as "<id> <closes at ms>". PUBLISH hands the
 * message to every subscribed instance before it answers, so by the time CreateCampaign answers,
 * every instance has been sent the id; one that missed it (disconnected at the time) makes up
 * for it with its next periodic read.
 */
export class RedisCampaignAnnouncer implements CampaignAnnouncer {
  private readonly publisher: RedisClient;
  private readonly channel: string;

  constructor(publisher: RedisClient, channel: string) {
    this.publisher = publisher;
    this.channel = channel;
  }

  async announce(campaign: LiveCampaign): Promise<void> {
    await this.publisher
      .publish(this.channel, `${campaign.id} ${campaign.expiresAt.getTime()}`)
      .catch(() => undefined);
  }
}

/**
 * Adds every campaign announced on `channel` to the directory. `subscriber` is a connection of
 * its own with the offline queue on (see SoldOutCachingGate.create, which may share it). After a
 * reconnect, announcements may have been missed: the directory reads what was created meanwhile.
 */
export async function listenForNewCampaigns(
  subscriber: RedisClient,
  channel: string,
  directory: CampaignDirectory,
): Promise<void> {
  subscriber.on('message', (from: string, message: string) => {
    if (from !== channel) return;
    const [id = '', closesAt] = message.split(' ');
    const expiresAt = new Date(Number(closesAt));
    if (couldBeCampaignId(id) && !Number.isNaN(expiresAt.getTime())) directory.add({ id, expiresAt });
  });
  subscriber.on('ready', () => {
    if (directory.isLoaded) directory.refresh().catch(() => undefined);
  });
  const subscribed = subscriber.subscribe(channel).catch(() => undefined);
  await Promise.race([subscribed, new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
}
