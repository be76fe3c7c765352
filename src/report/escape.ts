/**
 * Escaping for text that goes into the HTML report (element content and quoted attribute values,
 * in HTML and in inline SVG alike).
 */

const ENTITIES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Escapes `& < > " '` so any string is safe as element text or as a quoted attribute value.
 * @example escapeHtml('<b>&"x"') // '&lt;b&gt;&amp;&quot;x&quot;'
 */
export function escapeHtml(text: string): string {
  return String(text).replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}
