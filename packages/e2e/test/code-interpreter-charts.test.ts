// What E2B's template adds to Python results, on aiva's code interpreter, driven by the
// real `@e2b/code-interpreter` SDK: `result.chart` for matplotlib figures (every chart
// type, with E2B's own test figures and expected values), real PNGs of the figure's
// size, `result.data` for DataFrames, and PIL images displayed by show(), save() and as
// the last expression.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { type Execution, type Result, Sandbox } from '@e2b/code-interpreter';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

// Minutes the first time (Debian's scientific Python stack), then cached like base.
templateBuiltForFile('code-interpreter-v1');

aivaUpForFile();

type Fields = Record<string, unknown>;
type Chart = Fields & { type: string; title: string | null; elements: Fields[] };

/** The one result of a run that carries a chart. */
function chartOf(run: Execution): Chart {
  assert.equal(run.error, undefined, run.error?.traceback);
  const withChart = run.results.filter((r) => r.chart);
  assert.equal(withChart.length, 1, `one chart among ${JSON.stringify(run.results.map((r) => r.formats()))}`);
  return withChart[0]?.chart as unknown as Chart;
}

const pluck = (elements: Fields[], key: string) => elements.map((e) => e[key]);

/** A PNG's width and height from its IHDR chunk, after checking it is a PNG. */
function pngSize(result: Result | undefined): { width: number; height: number } {
  assert.ok(result?.png, 'a PNG');
  const png = Buffer.from(result.png, 'base64');
  assert.equal(png.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'the PNG signature');
  assert.equal(png.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** The inline backend crops a figure to what is drawn (bbox_inches='tight'): a bit less than its size. */
function assertFigurePng(result: Result | undefined, width: number, height: number): void {
  assert.equal(result?.text, `<Figure size ${width}x${height} with 1 Axes>`);
  const size = pngSize(result);
  assert.ok(size.width <= width && size.width > width * 0.8, `width ${size.width} of ${width}`);
  assert.ok(size.height <= height && size.height > height * 0.8, `height ${size.height} of ${height}`);
}

describe('charts, data and images in results through @e2b/code-interpreter', () => {
  let sbx: Sandbox;

  before(async () => {
    sbx = await Sandbox.create({ timeoutMs: 300_000 });
  });

  test('bar: labels, values and group; the PNG has the figure size; extra is {}', async () => {
    const run = await sbx.runCode(`
import matplotlib.pyplot as plt
authors = ['Author A', 'Author B', 'Author C', 'Author D']
sales = [100, 200, 300, 400]
plt.figure(figsize=(10, 6))
plt.bar(authors, sales, label='Books Sold', color='blue')
plt.xlabel('Authors')
plt.ylabel('Number of Books Sold')
plt.title('Book Sales by Authors')
plt.tight_layout()
plt.show()
`);
    const chart = chartOf(run);
    assert.equal(chart.type, 'bar');
    assert.equal(chart.title, 'Book Sales by Authors');
    assert.equal(chart.x_label, 'Authors');
    assert.equal(chart.y_label, 'Number of Books Sold');
    assert.ok('x_unit' in chart && chart.x_unit === null, 'x_unit is present as null');
    assert.ok('y_unit' in chart && chart.y_unit === null, 'y_unit is present as null');
    assert.deepEqual(pluck(chart.elements, 'value'), [100, 200, 300, 400]);
    assert.deepEqual(pluck(chart.elements, 'label'), ['Author A', 'Author B', 'Author C', 'Author D']);
    assert.deepEqual(pluck(chart.elements, 'group'), Array(4).fill('Books Sold'));
    const [result] = run.results;
    assert.equal(run.results.length, 1);
    assert.deepEqual(result?.extra, {});
    assert.deepEqual(result?.formats(), ['png']);
    assertFigurePng(result, 1000, 600);
  });

  test('line: datetime x with ISO ticks and points, linear y, units from the labels', async () => {
    const chart = chartOf(
      await sbx.runCode(`
import numpy as np
import matplotlib.pyplot as plt
import datetime
dates = [datetime.date(2023, 9, 1) + datetime.timedelta(seconds=i) for i in range(100)]
x = np.linspace(0, 2*np.pi, 100)
plt.figure(figsize=(10, 6))
plt.plot(dates, np.sin(x), label='sin(x)')
plt.plot(dates, np.cos(x), label='cos(x)')
plt.xlabel("Time (s)")
plt.ylabel("Amplitude (Hz)")
plt.title('Plot of sin(x) and cos(x)')
plt.show()
`),
    );
    assert.equal(chart.type, 'line');
    assert.equal(chart.title, 'Plot of sin(x) and cos(x)');
    assert.deepEqual(
      [chart.x_label, chart.y_label, chart.x_unit, chart.y_unit],
      ['Time (s)', 'Amplitude (Hz)', 's', 'Hz'],
    );
    assert.deepEqual([chart.x_scale, chart.y_scale], ['datetime', 'linear']);
    const xTicks = chart.x_ticks as unknown[];
    assert.ok(
      xTicks.length > 0 && xTicks.every((t) => typeof t === 'string' && !Number.isNaN(Date.parse(t))),
    );
    assert.ok((chart.y_ticks as unknown[]).every((t) => typeof t === 'number'));
    assert.ok((chart.y_tick_labels as unknown[]).every((t) => typeof t === 'string'));
    assert.deepEqual(pluck(chart.elements, 'label'), ['sin(x)', 'cos(x)']);
    for (const line of chart.elements) {
      const points = line.points as [unknown, unknown][];
      assert.equal(points.length, 100);
      assert.ok(points.every(([x, y]) => typeof x === 'string' && typeof y === 'number'));
      assert.equal(new Date(points[0]?.[0] as string).toISOString(), '2023-09-01T00:00:00.000Z');
    }
    assert.deepEqual(chart.elements[1]?.points && (chart.elements[1].points as unknown[])[0], [
      '2023-09-01',
      1,
    ]);
  });

  test('scales: log y, and a categorical y from string values', async () => {
    const log = chartOf(
      await sbx.runCode(`
import numpy as np
import matplotlib.pyplot as plt
x = np.linspace(0, 100, 100)
plt.figure(figsize=(10, 6))
plt.plot(x, np.exp(x), label='y = e^x')
plt.yscale('log')
plt.xlabel('X-axis')
plt.ylabel('Y-axis (log scale)')
plt.title('Chart with Log Scale on Y-axis')
plt.legend()
plt.grid(True)
plt.show()
`),
    );
    assert.deepEqual(
      [log.type, log.x_scale, log.y_scale, log.x_unit, log.y_unit],
      ['line', 'linear', 'log', null, 'log scale'],
    );
    assert.deepEqual(pluck(log.elements, 'label'), ['y = e^x'], 'grid lines are not lines');
    assert.deepEqual(
      log.elements.map((l) => (l.points as unknown[]).length),
      [100],
    );
    const categorical = chartOf(
      await sbx.runCode(
        "import matplotlib.pyplot as plt\nplt.figure(figsize=(10, 6))\nplt.plot([1, 2, 3, 4, 5], ['A', 'B', 'C', 'D', 'E'])\nplt.show()",
      ),
    );
    assert.deepEqual([categorical.x_scale, categorical.y_scale], ['linear', 'categorical']);
    assert.deepEqual(categorical.y_tick_labels, ['A', 'B', 'C', 'D', 'E']);
    assert.deepEqual(pluck(categorical.elements, 'label'), ['Line 0']);
  });

  test('scatter: one element per collection, with its label and points', async () => {
    const chart = chartOf(
      await sbx.runCode(`
import matplotlib.pyplot as plt
import numpy as np
N = 5
plt.xlabel("A")
plt.ylabel("B")
plt.scatter(np.random.rand(N), np.random.rand(N), c='blue', label='Dataset 1')
plt.scatter(np.random.rand(2*N), np.random.rand(2*N), c='red', label='Dataset 2')
plt.show()
`),
    );
    assert.equal(chart.type, 'scatter');
    assert.equal(chart.title, null);
    assert.deepEqual([chart.x_label, chart.y_label], ['A', 'B']);
    assert.ok((chart.x_ticks as unknown[]).every((t) => typeof t === 'number'));
    assert.deepEqual(pluck(chart.elements, 'label'), ['Dataset 1', 'Dataset 2']);
    assert.deepEqual(
      chart.elements.map((e) => (e.points as number[][]).length),
      [5, 10],
    );
    const points = chart.elements.flatMap((e) => e.points as number[][]);
    assert.ok(points.every(([x, y]) => typeof x === 'number' && typeof y === 'number' && x >= 0 && x < 1));
  });

  test('pie: wedge labels, angles 324 and 36, radius 1', async () => {
    const chart = chartOf(
      await sbx.runCode(`
import matplotlib.pyplot as plt
categories = ["No", "No, in blue"]
fig, ax = plt.subplots(figsize=(8, 8))
plt.xlabel("x")
plt.ylabel("y")
ax.pie([90, 10], labels=categories, autopct='%1.1f%%', startangle=90, colors=plt.cm.Pastel1.colors[:2])
ax.axis('equal')
plt.title('Will I wake up early tomorrow?')
plt.show()
`),
    );
    assert.deepEqual(chart, {
      type: 'pie',
      title: 'Will I wake up early tomorrow?',
      elements: [
        { label: 'No', angle: 324, radius: 1 },
        { label: 'No, in blue', angle: 36, radius: 1 },
      ],
    });
  });

  test('box and whisker: quartiles, whiskers and outliers of each box', async () => {
    const chart = chartOf(
      await sbx.runCode(`
import matplotlib.pyplot as plt
data = {
    'Class A': [85, 90, 78, 92, 88],
    'Class B': [95, 89, 76, 91, 84, 87],
    'Class C': [75, 82, 88, 79, 86]
}
fig, ax = plt.subplots(figsize=(10, 6))
ax.set_title('Exam Scores Distribution')
ax.set_xlabel('Class')
ax.set_ylabel('Score')
ax.boxplot(data.values(), labels=data.keys(), patch_artist=True)
plt.tight_layout()
plt.show()
`),
    );
    assert.equal(chart.type, 'box_and_whisker');
    assert.equal(chart.title, 'Exam Scores Distribution');
    assert.deepEqual(
      [chart.x_label, chart.y_label, chart.x_unit, chart.y_unit],
      ['Class', 'Score', null, null],
    );
    const e = chart.elements;
    assert.deepEqual(pluck(e, 'label'), ['Class A', 'Class B', 'Class C']);
    assert.deepEqual(pluck(e, 'outliers'), [[], [76], []]);
    assert.deepEqual(pluck(e, 'min'), [78, 84, 75]);
    assert.deepEqual(pluck(e, 'first_quartile'), [85, 84.75, 79]);
    assert.deepEqual(pluck(e, 'median'), [88, 88, 82]);
    assert.deepEqual(pluck(e, 'third_quartile'), [90, 90.5, 86]);
    assert.deepEqual(pluck(e, 'max'), [92, 95, 88]);
  });

  test('superchart: the suptitle and one full chart per axes', async () => {
    const run = await sbx.runCode(`
import matplotlib.pyplot as plt
import numpy as np
x1 = np.linspace(0, 10, 100)
fig, axs = plt.subplots(1, 2, figsize=(10, 8))
fig.suptitle('Multiple Charts Example', fontsize=16)
axs[0].plot(x1, np.sin(x1), 'r')
axs[0].set_title('Sine Wave')
axs[0].grid(True)
axs[1].scatter(np.random.rand(5), np.random.rand(5), c='blue', label='Dataset 1')
axs[1].set_xlabel('X')
axs[1].set_ylabel('Y')
axs[1].set_title('Scatter Plot')
axs[1].grid(True)
plt.show()
`);
    const chart = chartOf(run);
    assert.equal(chart.type, 'superchart');
    assert.equal(chart.title, 'Multiple Charts Example');
    const [line, scatter] = chart.elements as Chart[];
    assert.equal(chart.elements.length, 2);
    assert.deepEqual(
      [line?.type, line?.title, line?.x_label, line?.y_label],
      ['line', 'Sine Wave', null, null],
    );
    assert.deepEqual(
      line?.elements.map((l) => (l.points as unknown[]).length),
      [100],
    );
    assert.deepEqual(
      [scatter?.type, scatter?.title, scatter?.x_label, scatter?.y_label],
      ['scatter', 'Scatter Plot', 'X', 'Y'],
    );
    assert.deepEqual(
      scatter?.elements.map((s) => [s.label, (s.points as unknown[]).length]),
      [['Dataset 1', 5]],
    );
    assert.equal(run.results[0]?.text, '<Figure size 1000x800 with 2 Axes>');
    const size = pngSize(run.results[0]);
    assert.ok(
      size.width <= 1000 && size.width > 800 && size.height <= 800 && size.height > 640,
      JSON.stringify(size),
    );
  });

  test('unknown artists give an unknown chart; a figure with no data has a PNG but no chart', async () => {
    const unknown = chartOf(
      await sbx.runCode(`
import matplotlib.pyplot as plt
fig, ax = plt.subplots()
ax.add_artist(plt.Circle((0, 0), 1, color='blue', fill=False, linewidth=2))
ax.add_artist(plt.Circle((0, 0), 2, color='red', fill=False, linewidth=2))
ax.grid(True)
plt.title('Two Concentric Circles')
plt.show()
`),
    );
    assert.deepEqual(unknown, { type: 'unknown', title: 'Two Concentric Circles', elements: [] });
    const blank = await sbx.runCode('import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nplt.show()');
    assert.equal(blank.error, undefined);
    assert.equal(blank.results.length, 1);
    assert.equal(blank.results[0]?.chart, undefined);
    assertFigurePng(blank.results[0], 640, 480);
  });

  test('a DataFrame result carries its columns as data: timestamps in ISO form, NaN and NaT as null', async () => {
    const run = await sbx.runCode(`
import pandas as pd
pd.DataFrame({
    "a": [1, 2, 3],
    "b": [0.5, None, 2.5],
    "when": pd.to_datetime(["2024-01-02 03:04:05", None, "2024-12-31"]),
    "name": ["x", "y", None],
})
`);
    assert.equal(run.error, undefined, run.error?.traceback);
    const [result] = run.results;
    assert.deepEqual(result?.data, {
      a: [1, 2, 3],
      b: [0.5, null, 2.5],
      when: ['2024-01-02T03:04:05', null, '2024-12-31T00:00:00'],
      name: ['x', 'y', null],
    });
    assert.ok(result?.html?.includes('<table'), 'the HTML table too');
    assert.deepEqual(result?.formats(), ['html', 'data']);
    // Not a DataFrame: no data.
    assert.equal((await sbx.runCode('{"a": [1, 2, 3]}')).results[0]?.data, undefined);
  });

  test('PIL images: show() and save(path) display them, a bare image is a PNG; savefig shows nothing extra', async () => {
    const make = `
import numpy
from PIL import Image
image = Image.fromarray((numpy.random.rand(16, 24, 3) * 255).astype('uint8')).convert('RGBA')
`;
    const shown = await sbx.runCode(`${make}\nimage.show()\nprint("done")`);
    assert.equal(shown.error, undefined, shown.error?.traceback);
    assert.deepEqual(shown.logs.stdout, ['done\n']);
    assert.equal(shown.results.length, 1);
    assert.deepEqual(pngSize(shown.results[0]), { width: 24, height: 16 });

    const bare = await sbx.runCode(`${make}\nimage`);
    assert.equal(bare.results[0]?.isMainResult, true);
    assert.deepEqual(pngSize(bare.results[0]), { width: 24, height: 16 });

    const saved = await sbx.runCode(
      `${make}\nimage.save("test.png")\nimport os\nos.path.getsize("test.png") > 0`,
    );
    assert.equal(saved.error, undefined, saved.error?.traceback);
    assert.equal(saved.results.length, 2, 'the displayed image, then the last expression');
    assert.deepEqual(pngSize(saved.results[0]), { width: 24, height: 16 });
    assert.equal(saved.results[1]?.text, 'True');

    const figure = await sbx.runCode(
      'import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig("figure.png")\nplt.close()',
    );
    assert.equal(figure.error, undefined, figure.error?.traceback);
    assert.equal(figure.results.length, 0, 'savefig saves through PIL, but is not a displayed image');
    await sbx.kill();
  });
});
