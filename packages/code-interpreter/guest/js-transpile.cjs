'use strict';
// What aiva's JavaScript kernel runs instead of a cell's code, as E2B's kernel does it:
// TypeScript types are stripped, ESM `import`/`export` become CommonJS (`require`), and a
// cell with a top-level `await` is wrapped in an async function whose Promise the kernel
// awaits (its last expression is the cell's result). Runs on the template's node 18
// with Babel 7 from the kernel's prefix.

/**
 * The cell's top-level statements, rewritten so that they run inside
 * `(async () => { … })()` while what they declare stays global (a later cell sees it):
 * declarations become assignments to variables declared before the wrapper, function
 * declarations move out of it, and the last expression is returned.
 */
function topLevelAwaitPlugin({ types: t }) {
  const hasTopLevelAwait = (path) => {
    let found = false;
    path.traverse({
      Function(p) {
        p.skip();
      },
      'AwaitExpression|ForOfStatement'(p) {
        if (p.isAwaitExpression() || p.node.await) {
          found = true;
          p.stop();
        }
      },
    });
    return found;
  };

  return {
    name: 'aiva-top-level-await',
    visitor: {
      Program(path) {
        if (!hasTopLevelAwait(path)) return;
        const hoisted = []; // declarations before the wrapper
        const body = []; // the wrapper's statements
        const stmts = path.get('body');
        stmts.forEach((p, i) => {
          const node = p.node;
          const last = i === stmts.length - 1;
          if (p.isFunctionDeclaration()) {
            hoisted.push(node);
          } else if (p.isVariableDeclaration()) {
            const kind = node.kind === 'var' ? 'var' : 'let';
            const names = Object.keys(p.getBindingIdentifiers());
            if (names.length > 0)
              hoisted.push(
                t.variableDeclaration(
                  kind,
                  names.map((n) => t.variableDeclarator(t.identifier(n))),
                ),
              );
            for (const d of node.declarations) {
              if (d.init) body.push(t.expressionStatement(t.assignmentExpression('=', d.id, d.init)));
            }
          } else if (p.isClassDeclaration() && node.id) {
            hoisted.push(t.variableDeclaration('let', [t.variableDeclarator(t.identifier(node.id.name))]));
            body.push(
              t.expressionStatement(
                t.assignmentExpression(
                  '=',
                  t.identifier(node.id.name),
                  t.classExpression(node.id, node.superClass, node.body, node.decorators || []),
                ),
              ),
            );
          } else if (last && p.isExpressionStatement() && !p.get('expression').isAssignmentExpression()) {
            body.push(t.returnStatement(node.expression));
          } else {
            body.push(node);
          }
        });
        const wrapper = t.callExpression(t.arrowFunctionExpression([], t.blockStatement(body), true), []);
        path.node.body = [...hoisted, t.expressionStatement(wrapper)];
      },
    },
  };
}

/** `transpile(code)` for jp-kernel's config: Babel from the kernel's own node_modules. */
function makeTranspile(requireFromPrefix) {
  const babel = requireFromPrefix('@babel/core');
  const presetTs = requireFromPrefix('@babel/preset-typescript');
  const modulesCjs = requireFromPrefix('@babel/plugin-transform-modules-commonjs');
  const common = { babelrc: false, configFile: false, compact: false, comments: true, highlightCode: false };
  return function transpile(code) {
    try {
      return transform(code);
    } catch (e) {
      // Babel names its made-up file (`/cwd/cell.ts: Unexpected token (1:3)`): say only what is wrong.
      if (e && e.code === 'BABEL_PARSE_ERROR') {
        const error = new SyntaxError(String(e.message).replace(/^.*?cell\.[jt]s: /, ''));
        error.stack = `SyntaxError: ${error.message}`;
        throw error;
      }
      throw e;
    }
  };
  function transform(code) {
    const first = babel.transformSync(code, {
      ...common,
      filename: 'cell.ts',
      sourceType: 'unambiguous',
      parserOpts: { allowAwaitOutsideFunction: true, allowReturnOutsideFunction: false },
      presets: [[presetTs, { allExtensions: true, onlyRemoveTypeImports: true }]],
      plugins: [[modulesCjs, { importInterop: 'node', strictMode: false }]],
    });
    const second = babel.transformSync(first.code, {
      ...common,
      filename: 'cell.js',
      sourceType: 'script',
      parserOpts: { allowAwaitOutsideFunction: true },
      plugins: [topLevelAwaitPlugin],
    });
    return second.code;
  }
}

module.exports = { makeTranspile, topLevelAwaitPlugin };
