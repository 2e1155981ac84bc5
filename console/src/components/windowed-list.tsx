import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';

/** Options of {@link WindowedList}. */
export interface WindowedListProps<T> {
  readonly items: readonly T[];
  /** Every row's height in CSS pixels (rows are fixed-height so that the window is arithmetic). */
  readonly rowHeight: number;
  readonly renderRow: (item: T, index: number) => ComponentChildren;
  readonly rowKey: (item: T) => string;
  /** Called when the window nears the end, to load the next page. */
  readonly onNearEnd?: () => void;
  /** Rows rendered beyond the visible ones on each side. @default 8 */
  readonly overscan?: number;
}

/**
 * Renders only the rows in view (plus a margin) of a long list, so 10,000 keys cost the DOM a few
 * dozen rows. The spacers' heights are set through the CSSOM, which the CSP allows (it forbids
 * only style attributes in markup).
 */
export function WindowedList<T>({
  items,
  rowHeight,
  renderRow,
  rowKey,
  onNearEnd,
  overscan = 8,
}: WindowedListProps<T>) {
  const viewport = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const element = viewport.current;
    if (!element) return;
    const observer = new ResizeObserver(() => setHeight(element.clientHeight));
    observer.observe(element);
    return () => observer.disconnect();
  }, []);
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  useEffect(() => {
    if (onNearEnd && last >= items.length - overscan) onNearEnd();
  }, [last, items.length]);
  return (
    <div
      class="windowed"
      ref={viewport}
      onScroll={(event) => setScrollTop((event.currentTarget as HTMLDivElement).scrollTop)}
      role="rowgroup"
      data-rows={items.length}
    >
      <div style={{ height: `${first * rowHeight}px` }} />
      {items.slice(first, last).map((item, offset) => (
        <div class="windowed-row" key={rowKey(item)} style={{ height: `${rowHeight}px` }}>
          {renderRow(item, first + offset)}
        </div>
      ))}
      <div style={{ height: `${(items.length - last) * rowHeight}px` }} />
    </div>
  );
}
