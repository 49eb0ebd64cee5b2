import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import { type Language, localeOf } from './i18n.tsx';

/** One point per whole second: how many coupons were issued during it. */
export interface RatePoint {
  readonly second: number;
  readonly issued: number;
}

/**
 * Issues per second during the rush, drawn by uPlot (canvas, cheap to redraw ten times a second).
 * The time axis is written in the page's language and the browser's zone, as every time on the
 * page is (uPlot's own ticks are English: "12:34:56pm").
 */
export function RateChart({
  points,
  label,
  language,
}: {
  points: readonly RatePoint[];
  label: string;
  language: Language;
}) {
  const container = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  // A plot made again (the language changed) starts from the points drawn so far, not empty.
  const latest = useRef(points);
  latest.current = points;

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const width = () => Math.max(280, Math.min(element.clientWidth, 900));
    const tick = new Intl.DateTimeFormat(localeOf(language), { timeStyle: 'medium' });
    plot.current = new uPlot(
      {
        width: width(),
        height: 220,
        series: [{}, { label, stroke: '#d9480f', fill: 'rgba(217, 72, 15, 0.15)', width: 2 }],
        axes: [
          {
            values: (_plot, seconds) => seconds.map((second) => tick.format(second * 1000)),
            // At least a label's width apart ("오후 12:35:05" is wider than uPlot's own ticks).
            space: language === 'ko' ? 110 : 80,
            // A label is centred on its tick: one too close to the right edge would be cut off.
            filter: (self, splits) =>
              splits.map((second) =>
                self.valToPos(second, 'x') > self.over.clientWidth - (language === 'ko' ? 20 : 5)
                  ? null
                  : second,
              ),
          },
          { label },
        ],
        scales: { x: { time: true } },
        legend: { show: false },
      },
      asData(latest.current),
      element,
    );
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: width(), height: 220 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [label, language]);

  useEffect(() => {
    plot.current?.setData(asData(points));
  }, [points]);

  return <div ref={container} data-testid="issue-rate-chart" role="img" aria-label={label} />;
}

function asData(points: readonly RatePoint[]): uPlot.AlignedData {
  return [points.map((point) => point.second), points.map((point) => point.issued)];
}
