import { useEffect, useRef } from 'react';
import uPlot from 'uplot';

/** One point per whole second: how many coupons were issued during it. */
export interface RatePoint {
  readonly second: number;
  readonly issued: number;
}

/** Issues per second during the rush, drawn by uPlot (canvas, cheap to redraw ten times a second). */
export function RateChart({ points, label }: { points: readonly RatePoint[]; label: string }) {
  const container = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    const element = container.current;
    if (!element) return;
    const width = () => Math.max(280, Math.min(element.clientWidth, 900));
    plot.current = new uPlot(
      {
        width: width(),
        height: 220,
        series: [{}, { label, stroke: '#d9480f', fill: 'rgba(217, 72, 15, 0.15)', width: 2 }],
        axes: [{}, { label }],
        scales: { x: { time: true } },
        legend: { show: false },
      },
      [[], []],
      element,
    );
    const resize = new ResizeObserver(() => plot.current?.setSize({ width: width(), height: 220 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [label]);

  useEffect(() => {
    plot.current?.setData([points.map((point) => point.second), points.map((point) => point.issued)]);
  }, [points]);

  return <div ref={container} data-testid="issue-rate-chart" role="img" aria-label={label} />;
}
