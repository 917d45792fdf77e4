/**
 * Echo: replies with what it received. The smallest useful handler.
 *
 *   mrp run --handler handlers/echo.ts
 */
import type { Handler } from 'mrp';

const echo: Handler = async (msg, ctx) => {
  ctx.log.debug('echoing', { from: msg.sender_key, content_type: msg.content_type });
  return { echo: msg.body, from: msg.sender_key, message_id: msg.message_id };
};

export default echo;
