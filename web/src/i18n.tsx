import { createContext, type ReactNode, useContext, useEffect, useState } from 'react';

const ko = {
  title: '쿠폰 캠페인 콘솔',
  campaigns: '캠페인',
  newCampaign: '새 캠페인',
  name: '이름',
  amount: '수량',
  opensAt: '시작',
  closesAt: '종료',
  create: '만들기',
  created: '만들었습니다',
  state: '상태',
  issued: '발급',
  remaining: '남은 쿠폰',
  noCampaigns: '아직 캠페인이 없습니다',
  SCHEDULED: '시작 전',
  OPEN: '진행 중',
  SOLD_OUT: '매진',
  ENDED: '종료됨',
  UNSPECIFIED: '알 수 없음',
  back: '← 캠페인 목록',
  issueRate: '초당 발급',
  perSecond: '건/초',
  live: '실시간 연결됨',
  connecting: '연결 중…',
  reconnecting: (seconds: number) => `연결이 끊겼습니다. ${seconds}초 후 다시 연결합니다`,
  streamEnded: '캠페인이 끝나 실시간 갱신을 멈췄습니다',
  admin: '관리',
  adminToken: '관리자 토큰',
  save: '저장',
  saved: '이 탭에 저장했습니다',
  closeCampaign: '캠페인 종료',
  closeConfirm: '지금 발급을 멈출까요? 되돌릴 수 없습니다.',
  changeAmount: '수량 변경',
  newAmount: '새 수량',
  changeConfirm: (amount: string) => `수량을 ${amount}개로 바꿀까요?`,
  confirm: '확인',
  cancel: '취소',
  done: '완료했습니다',
  tryIt: '발급해 보기',
  userId: '사용자 ID',
  issue: '쿠폰 받기',
  yourCode: '쿠폰 코드',
  notOpenYet: (when: string) => `아직 시작 전입니다 (${when} 시작)`,
  ended: '캠페인이 끝났습니다',
  alreadyIssued: '이미 발급받았습니다',
  soldOut: '매진되었습니다',
  rateLimited: (ms: number) => `요청이 너무 많습니다. ${(ms / 1000).toFixed(1)}초 후 다시 시도하세요`,
  unauthenticated: '관리자 토큰이 필요합니다 (위 관리 칸에 입력하세요)',
  timeZone: '시간대',
  language: 'English',
  protocol: '프로토콜',
  loading: '불러오는 중…',
  couponLookup: '쿠폰 조회·사용',
  lookUp: '조회',
  campaign: '캠페인',
  issuedAt: '발급 시각',
  validUntil: '유효기간',
  noExpiry: '기한 없음',
  redeemedAt: '사용 시각',
  orderId: '주문 번호',
  redeem: '사용 처리',
  redeemed: (orderId: string) => `주문 ${orderId}에 사용했습니다`,
  cancelRedemption: '사용 취소',
  redemptionCancelled: (orderId: string) => `주문 ${orderId}의 사용을 취소했습니다: 다시 사용할 수 있습니다`,
  couponStates: { ISSUED: '사용 가능', REDEEMED: '사용됨', EXPIRED: '기간 만료', UNSPECIFIED: '알 수 없음' },
  couponNotFound: '그런 코드의 쿠폰이 없습니다',
  notACode: '쿠폰 코드가 아닙니다 (한글과 숫자 10자, 숫자 하나 이상)',
  usedByAnotherOrder: '이미 다른 주문에 사용된 쿠폰입니다 (그 주문을 먼저 취소해야 합니다)',
  couponExpired: (when: string) => `유효기간이 지난 쿠폰입니다 (${when}까지)`,
};

type Messages = typeof ko;

const en: Messages = {
  title: 'Coupon campaign console',
  campaigns: 'Campaigns',
  newCampaign: 'New campaign',
  name: 'Name',
  amount: 'Amount',
  opensAt: 'Opens',
  closesAt: 'Closes',
  create: 'Create',
  created: 'Created',
  state: 'State',
  issued: 'Issued',
  remaining: 'Remaining',
  noCampaigns: 'No campaigns yet',
  SCHEDULED: 'Scheduled',
  OPEN: 'Open',
  SOLD_OUT: 'Sold out',
  ENDED: 'Ended',
  UNSPECIFIED: 'Unknown',
  back: '← Campaigns',
  issueRate: 'Issues per second',
  perSecond: '/s',
  live: 'Live',
  connecting: 'Connecting…',
  reconnecting: (seconds: number) => `Connection lost; reconnecting in ${seconds} s`,
  streamEnded: 'The campaign has ended: live updates stopped',
  admin: 'Admin',
  adminToken: 'Admin token',
  save: 'Save',
  saved: 'Saved for this tab',
  closeCampaign: 'Close campaign',
  closeConfirm: 'Stop issuing now? This cannot be undone.',
  changeAmount: 'Change amount',
  newAmount: 'New amount',
  changeConfirm: (amount: string) => `Change the amount to ${amount}?`,
  confirm: 'Confirm',
  cancel: 'Cancel',
  done: 'Done',
  tryIt: 'Try it',
  userId: 'User id',
  issue: 'Get a coupon',
  yourCode: 'Coupon code',
  notOpenYet: (when: string) => `Not open yet (opens ${when})`,
  ended: 'The campaign has ended',
  alreadyIssued: 'Already issued to this user',
  soldOut: 'Sold out',
  rateLimited: (ms: number) => `Rate limited: retry in ${(ms / 1000).toFixed(1)} s`,
  unauthenticated: 'The admin token is needed (type it in Admin above)',
  timeZone: 'Time zone',
  language: '한국어',
  protocol: 'Protocol',
  loading: 'Loading…',
  couponLookup: 'Look up and redeem a coupon',
  lookUp: 'Look up',
  campaign: 'Campaign',
  issuedAt: 'Issued at',
  validUntil: 'Valid until',
  noExpiry: 'No expiry',
  redeemedAt: 'Redeemed at',
  orderId: 'Order id',
  redeem: 'Redeem',
  redeemed: (orderId: string) => `Redeemed for order ${orderId}`,
  cancelRedemption: 'Cancel redemption',
  redemptionCancelled: (orderId: string) =>
    `Redemption for order ${orderId} cancelled: the coupon is usable again`,
  couponStates: { ISSUED: 'Usable', REDEEMED: 'Redeemed', EXPIRED: 'Expired', UNSPECIFIED: 'Unknown' },
  couponNotFound: 'No coupon has this code',
  notACode: 'Not a coupon code (10 characters: Hangul syllables and at least one digit)',
  usedByAnotherOrder: 'Already used by another order (cancel that redemption first)',
  couponExpired: (when: string) => `This coupon has expired (valid until ${when})`,
};

export type Language = 'ko' | 'en';
const LANGUAGE_KEY = 'coupon-console.language';
const catalogs: Record<Language, Messages> = { ko, en };

interface I18n {
  readonly t: Messages;
  readonly language: Language;
  toggle(): void;
}

const I18nContext = createContext<I18n>({ t: ko, language: 'ko', toggle: () => undefined });

/** Korean first: the shops and users of these campaigns are Korean; English on request. */
export function I18nProvider({ children }: { children: ReactNode }) {
  const [language, setLanguage] = useState<Language>(() =>
    localStorage.getItem(LANGUAGE_KEY) === 'en' ? 'en' : 'ko',
  );
  useEffect(() => {
    document.documentElement.lang = language;
    document.title = catalogs[language].title;
    localStorage.setItem(LANGUAGE_KEY, language);
  }, [language]);
  const toggle = () => setLanguage((current) => (current === 'ko' ? 'en' : 'ko'));
  return <I18nContext value={{ t: catalogs[language], language, toggle }}>{children}</I18nContext>;
}

export const useI18n = () => useContext(I18nContext);

/** The browser's own zone, shown next to every time so nobody guesses. */
export const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone;

export function formatTime(date: Date | undefined, language: Language): string {
  if (!date) return '–';
  return new Intl.DateTimeFormat(localeOf(language), {
    dateStyle: 'medium',
    timeStyle: 'medium',
  }).format(date);
}

/** The locale a language's dates and times are written in. */
export function localeOf(language: Language): string {
  return language === 'ko' ? 'ko-KR' : 'en-GB';
}
