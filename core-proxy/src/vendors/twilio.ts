import { parseEndpointPattern, matchesRoute } from '../allowlist.js';
import { usdToMicros } from '../money.js';
import { type VendorModule, type VendorRequest, isSuccess, readBasic, readJson, readParams } from './vendor.js';
import { VAULT_KEY_PREFIX } from '../vault-keys.js';

const MESSAGES = parseEndpointPattern('POST /2010-04-01/Accounts/*/Messages.json');

/** The GSM 03.38 basic character set and its extension table (which costs two septets). */
const GSM_BASIC =
  '@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !"#¤%&\'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà';
const GSM_EXTENDED = '^{}\\[~]|€\f';

/** How many SMS segments Twilio splits a body into (GSM-7: 160/153 septets; UCS-2: 70/67 chars). */
export function smsSegments(body: string): number {
  let septets = 0;
  let gsm = true;
  for (const char of body) {
    if (GSM_BASIC.includes(char)) septets += 1;
    else if (GSM_EXTENDED.includes(char)) septets += 2;
    else {
      gsm = false;
      break;
    }
  }
  if (gsm) return septets <= 160 ? 1 : Math.ceil(septets / 153);
  const units = body.length; // UTF-16 code units, as UCS-2 counts them
  return units <= 70 ? 1 : Math.ceil(units / 67);
}

function isMessageCreate(request: VendorRequest): boolean {
  return matchesRoute(MESSAGES, request.method, request.segments);
}

/** Index of the account SID segment in `/2010-04-01/Accounts/{Sid}/...`. */
function accountSegmentIndex(segments: readonly string[]): number {
  return segments[1] === 'Accounts' && segments.length > 2 ? 2 : -1;
}

/** Twilio: HTTP Basic (vault key as username or password); the account SID in the path is rewritten. */
export const twilio: VendorModule = {
  name: 'twilio',
  defaultBaseUrl: 'https://api.twilio.com',
  secretNames: ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN'],
  costedEndpoints: [MESSAGES],

  readVaultKey(headers) {
    const credentials = readBasic(headers);
    if (!credentials) return undefined;
    const [username, password] = credentials;
    // The SDK insists on an `AC...` account SID as username, so the key usually rides as password.
    return username.startsWith(VAULT_KEY_PREFIX) ? username : password;
  },

  prepareUpstream(request, secrets) {
    const segments = [...request.segments];
    const index = accountSegmentIndex(segments);
    if (index >= 0) segments[index] = secrets.TWILIO_ACCOUNT_SID as string;
    const basic = Buffer.from(`${secrets.TWILIO_ACCOUNT_SID}:${secrets.TWILIO_AUTH_TOKEN}`).toString('base64');
    return { segments, headers: { authorization: `Basic ${basic}` } };
  },

  estimateCost(request, pricing) {
    if (!isMessageCreate(request)) return undefined;
    const params = readParams(request);
    if (params.all('MediaUrl').length > 0) return usdToMicros(pricing.twilioMmsUsd);
    // One Body: two would leave which one Twilio sends (and how many segments it bills) ambiguous.
    const segments = smsSegments(params.one('Body') ?? '');
    return usdToMicros(segments * pricing.twilioSegmentUsd);
  },

  settleCost(request, response, estimate, pricing) {
    if (!isMessageCreate(request) || !isSuccess(response.status)) return 0;
    const body = readJson(response.body) as
      { price?: unknown; price_unit?: unknown; num_segments?: unknown } | undefined;
    const price = typeof body?.price === 'string' ? Math.abs(Number(body.price)) : NaN;
    if (Number.isFinite(price) && (body?.price_unit ?? 'USD') === 'USD') return usdToMicros(price);
    const segments = Number(body?.num_segments);
    // Twilio usually prices a message after it is sent: fall back to the configured estimate.
    return Number.isInteger(segments) && segments > 0 ? usdToMicros(segments * pricing.twilioSegmentUsd) : estimate;
  },

  vendorRequestId(response) {
    const body = readJson(response.body) as { sid?: unknown } | undefined;
    return typeof body?.sid === 'string' ? body.sid : undefined;
  },

  maskResponseBody(request, body, secrets) {
    // Twilio echoes the account SID (`account_sid`, `uri`); give the client back the one it used.
    const realSid = secrets.TWILIO_ACCOUNT_SID as string;
    const index = accountSegmentIndex(request.segments);
    const clientSid = index >= 0 ? (request.segments[index] as string) : 'ACkeybrake';
    const text = body.toString('utf8');
    return text.includes(realSid) ? Buffer.from(text.split(realSid).join(clientSid)) : body;
  },
};
